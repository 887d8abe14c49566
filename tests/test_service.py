"""HTTP service over tiny real caches: exact answers, exclusion, cold start, 4xx paths, hot reload."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from recsys.cache.lookup import AudienceLookup
from recsys.config import PROJ_ROOT
from service.app import create_app, shown_path
from service.main import EXIT_NO_CACHE, main, run
from service.processes import wait_until
from service.settings import ServiceSettings
from service.state import CacheHolder, CacheLoadError
from service.testing import TINY_N, build_tiny_cache, client_score, expected_audiences, tiny_interactions

from conftest import TinyCache

UNKNOWN_INT = 999_999
DEADLINE_S = 30.0  # generous upper bound for background reloads; never asserted as a timing


# ---------------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------------


def as_triples(body: dict[str, Any]) -> list[tuple[Any, float, int]]:
    """A /recommend body's recommendations as (customer_id, score, rank) tuples."""
    return [(r["customer_id"], r["score"], r["rank"]) for r in body["recommendations"]]


@pytest.fixture(scope="module")
def client(int_cache: TinyCache, make_client: Callable[..., TestClient]) -> Iterator[TestClient]:
    """Module-scoped TestClient over the integer-id cache."""
    with make_client(int_cache.dir) as c:
        yield c


@pytest.fixture(scope="module")
def str_client(str_cache: TinyCache, make_client: Callable[..., TestClient]) -> Iterator[TestClient]:
    """Module-scoped TestClient over the string-id cache."""
    with make_client(str_cache.dir) as c:
        yield c


# ---------------------------------------------------------------------------------------------------
# happy paths
# ---------------------------------------------------------------------------------------------------


def test_shown_path_is_relative_to_the_project_root_or_just_a_name(tmp_path: Path) -> None:
    assert shown_path(PROJ_ROOT / "data" / "artifacts" / "cache") == "data/artifacts/cache"
    assert shown_path(tmp_path / "somewhere" / "cache") == "cache"


def test_health_reports_the_loaded_manifest(client: TestClient, int_cache: TinyCache) -> None:
    body = client.get("/health").json()
    manifest = int_cache.manifest
    assert body["status"] == "ok" and body["ready"] is True
    assert body["cache"]["version"] == manifest.version
    assert body["cache"]["ranker"] == manifest.ranker == "activity" and body["cache"]["engine"] == "pandas"
    assert "created_at" not in body["cache"]  # a content-addressed cache has no build time to show
    assert body["cache"]["products"] == manifest.counts.products == len(int_cache.expected)
    assert body["cache"]["data_fingerprint"] == manifest.fingerprint.value
    assert body["cache"]["max_exposures"] is None  # the tiny cache is uncapped
    assert body["cache"]["n"] == TINY_N
    assert body["cache"]["id_kind"] == "int" and body["cache"]["customer_id_kind"] == "int"
    assert body["last_reload_error"] is None and body["reloads"] == 0
    assert body["cache_dir"] == int_cache.dir.name  # outside the project root: its name only, never an absolute path


def test_recommend_matches_the_cache_exactly(client: TestClient, int_cache: TinyCache) -> None:
    version = int_cache.manifest.version
    for pid, expected in int_cache.expected.items():
        r = client.get(f"/recommend/{pid}", params={"n": TINY_N})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["product_id"] == pid and isinstance(body["product_id"], int)
        assert as_triples(body) == expected
        assert body["count"] == len(expected)
        assert body["cold_start"] is False
        assert body["model"] == version


def test_n_truncates_and_defaults_to_min_10_and_cache_n(client: TestClient, int_cache: TinyCache) -> None:
    pid, expected = next(iter(int_cache.expected.items()))
    assert as_triples(client.get(f"/recommend/{pid}", params={"n": 2}).json()) == expected[:2]
    assert as_triples(client.get(f"/recommend/{pid}").json()) == expected[: min(10, TINY_N)]


def test_no_recommended_customer_already_interacted(client: TestClient, int_cache: TinyCache) -> None:
    frame = int_cache.frame
    for pid in int_cache.expected:
        seen = set(frame.loc[frame["product_id"] == pid, "customer_id"].tolist())
        body = client.get(f"/recommend/{pid}", params={"n": TINY_N}).json()
        got = {r["customer_id"] for r in body["recommendations"]}
        assert got and not (got & seen), f"product {pid} recommends customers who already interacted: {got & seen}"


def test_unknown_product_gets_the_flagged_global_fallback(client: TestClient, int_cache: TinyCache) -> None:
    body = client.get(f"/recommend/{UNKNOWN_INT}", params={"n": 3}).json()
    customers, scores, cold = AudienceLookup.open(int_cache.dir).top(UNKNOWN_INT, 3)
    assert cold is True and body["cold_start"] is True
    assert body["product_id"] == UNKNOWN_INT
    assert as_triples(body) == [
        (c, client_score(s), i) for i, (c, s) in enumerate(zip(customers.tolist(), scores, strict=True), 1)
    ]
    assert body["count"] == len(customers) > 0


def test_batch_answers_each_product_in_request_order(client: TestClient, int_cache: TinyCache) -> None:
    known = list(int_cache.expected)
    ids: list[Any] = [known[2], str(known[0]), UNKNOWN_INT, known[2]]
    r = client.post("/recommend/batch", json={"product_ids": ids, "n": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 4 and body["model"] == int_cache.manifest.version
    assert [item["product_id"] for item in body["items"]] == [known[2], known[0], UNKNOWN_INT, known[2]]
    for item in body["items"]:
        single = client.get(f"/recommend/{item['product_id']}", params={"n": 3}).json()
        assert item == single
    assert [item["cold_start"] for item in body["items"]] == [False, False, True, False]


def test_batch_accepts_the_maximum_size(client: TestClient) -> None:
    r = client.post("/recommend/batch", json={"product_ids": list(range(1000)), "n": 1})
    assert r.status_code == 200 and r.json()["count"] == 1000


def test_products_sample_is_seedable_and_known(client: TestClient, int_cache: TinyCache) -> None:
    known = set(int_cache.expected)
    a = client.get("/products/sample", params={"n": 3, "seed": 7}).json()
    b = client.get("/products/sample", params={"n": 3, "seed": 7}).json()
    assert a == b and a["count"] == 3 and len(set(a["product_ids"])) == 3
    assert set(a["product_ids"]) <= known and all(isinstance(p, int) for p in a["product_ids"])
    everything = client.get("/products/sample", params={"n": 1000, "seed": 1}).json()
    assert sorted(everything["product_ids"]) == sorted(known)
    unseeded = client.get("/products/sample").json()
    replay = client.get("/products/sample", params={"seed": unseeded["seed"]}).json()
    assert replay["product_ids"] == unseeded["product_ids"]


def test_string_ids_are_served_as_strings(str_client: TestClient, str_cache: TinyCache) -> None:
    for pid, expected in str_cache.expected.items():
        body = str_client.get(f"/recommend/{pid}", params={"n": TINY_N}).json()
        assert body["product_id"] == pid and as_triples(body) == expected and body["cold_start"] is False
    unknown = str_client.get("/recommend/12345").json()
    assert unknown["product_id"] == "12345" and unknown["cold_start"] is True
    batch = str_client.post("/recommend/batch", json={"product_ids": [12345, "SKU101A"]}).json()
    assert [i["product_id"] for i in batch["items"]] == ["12345", "SKU101A"]
    assert str_client.get("/health").json()["cache"]["id_kind"] == "str"
    sample = str_client.get("/products/sample", params={"n": 2, "seed": 0}).json()
    assert all(isinstance(p, str) for p in sample["product_ids"])


def test_openapi_describes_the_loaded_cache(client: TestClient, str_client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/recommend/{product_id}"]["get"]
    params = {p["name"]: p["schema"] for p in op["parameters"]}
    assert params["product_id"]["type"] == "integer"
    n_int = next(s for s in params["n"]["anyOf"] if s.get("type") == "integer")
    assert n_int["minimum"] == 1 and n_int["maximum"] == TINY_N
    schemas = spec["components"]["schemas"]
    assert schemas["RecommendResponse"]["properties"]["product_id"]["type"] == "integer"
    assert schemas["Recommendation"]["properties"]["customer_id"]["type"] == "integer"
    assert set(spec["paths"]) >= {"/health", "/recommend/{product_id}", "/recommend/batch", "/products/sample"}
    cache = schemas["ManifestSummary"]
    health = client.get("/health").json()["cache"]
    assert set(cache["properties"]) == set(health) and set(cache["required"]) == set(health)  # /health as documented
    assert cache["properties"]["engine"]["enum"] == ["pandas", "spark"] and "created_at" not in cache["properties"]
    str_spec = str_client.get("/openapi.json").json()
    str_params = {p["name"]: p["schema"] for p in str_spec["paths"]["/recommend/{product_id}"]["get"]["parameters"]}
    assert str_params["product_id"]["type"] == "string"
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------------------------------------------
# client mistakes: always 4xx with a message, never a 500 or a traceback
# ---------------------------------------------------------------------------------------------------

BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    ("GET", "/recommend/abc", None, 422, "integers"),
    ("GET", "/recommend/1.5", None, 422, "integers"),
    ("GET", f"/recommend/{2**70}", None, 422, "64-bit"),
    ("GET", "/recommend/101?n=0", None, 422, "greater than or equal to 1"),
    ("GET", f"/recommend/101?n={TINY_N + 1}", None, 422, f"between 1 and {TINY_N}"),
    ("GET", "/recommend/101?n=-3", None, 422, "greater than or equal to 1"),
    ("GET", "/recommend/101?n=ten", None, 422, "valid integer"),
    ("GET", "/products/sample?n=0", None, 422, "greater than or equal to 1"),
    ("GET", "/products/sample?n=1001", None, 422, "less than or equal to 1000"),
    ("GET", "/products/sample?seed=-1", None, 422, "greater than or equal to 0"),
    ("GET", "/products/sample?seed=x", None, 422, "valid integer"),
    ("POST", "/recommend/batch", {"product_ids": list(range(1001))}, 422, "at most 1000"),
    ("POST", "/recommend/batch", {"product_ids": []}, 422, "at least 1"),
    ("POST", "/recommend/batch", {"product_ids": [101, "abc"]}, 422, "integers"),
    ("POST", "/recommend/batch", {"product_ids": [1.5]}, 422, "JSON integers or strings"),
    ("POST", "/recommend/batch", {"product_ids": [True]}, 422, "JSON integers or strings"),
    ("POST", "/recommend/batch", {"product_ids": [None]}, 422, "JSON integers or strings"),
    ("POST", "/recommend/batch", {"product_ids": "101"}, 422, "valid list"),
    ("POST", "/recommend/batch", {"product_ids": [101], "n": "3"}, 422, "valid integer"),
    ("POST", "/recommend/batch", {"product_ids": [101], "n": 0}, 422, "greater than or equal to 1"),
    ("POST", "/recommend/batch", {"product_ids": [101], "n": TINY_N + 1}, 422, f"between 1 and {TINY_N}"),
    ("POST", "/recommend/batch", {"product_id": [101]}, 422, "Field required"),
    ("POST", "/recommend/batch", {"product_ids": [101], "extra": 1}, 422, "Extra inputs"),
    ("POST", "/recommend/batch", [101, 102], 422, "valid dictionary"),
    ("POST", "/recommend/batch", b'{"product_ids": [101,', 422, "JSON decode error"),
    ("POST", "/recommend/batch", b"", 422, "Field required"),
    ("GET", "/no/such/route", None, 404, "Not Found"),
    ("PUT", "/recommend/101", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "message"),
    BAD_REQUESTS,
    ids=[f"{m} {u[:40]} {str(b)[:30]}" for m, u, b, _, _ in BAD_REQUESTS],
)
def test_client_mistakes_get_a_clear_4xx(
    client: TestClient, method: str, url: str, body: Any, status: int, message: str
) -> None:
    if isinstance(body, bytes):
        r = client.request(method, url, content=body, headers={"content-type": "application/json"})
    else:
        r = client.request(method, url, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert message in r.text, r.text
    assert "Traceback" not in r.text and 'File "' not in r.text


def test_a_body_not_sent_as_json_gets_415(client: TestClient) -> None:
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}):
        r = client.post("/recommend/batch", content=b'{"product_ids": [101]}', headers=headers)
        assert r.status_code == 415, (headers, r.text)
        assert "Content-Type: application/json" in r.json()["detail"]


def test_server_faults_are_logged_and_answered_generically(
    int_cache: TinyCache, caplog: pytest.LogCaptureFixture
) -> None:
    class Exploding:
        """A lookup whose `top` fails like a real bug would."""

        def __init__(self, inner: AudienceLookup) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def top(self, product_id: Any, n: int) -> Any:
            raise RuntimeError("secret internal detail")

    holder = CacheHolder(int_cache.dir, opener=lambda d: Exploding(AudienceLookup.open(d)))
    app = create_app(ServiceSettings(cache_dir=int_cache.dir, reload_interval_s=0), holder=holder)
    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level("ERROR", logger="recsys.service"):
        r = c.get("/recommend/101")
        assert c.get("/health").status_code == 200
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error"}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert any("secret internal detail" in (rec.exc_text or "") for rec in caplog.records)


# ---------------------------------------------------------------------------------------------------
# start-up and configuration
# ---------------------------------------------------------------------------------------------------


def test_startup_without_a_cache_fails_clearly(tmp_path: Path, make_client: Callable[..., TestClient]) -> None:
    with pytest.raises(CacheLoadError, match="manifest.json is missing"):
        with make_client(tmp_path / "missing"):
            pass


def test_startup_with_a_corrupt_manifest_fails_clearly(tmp_path: Path, make_client: Callable[..., TestClient]) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CacheLoadError, match="corrupt"):
        with make_client(tmp_path):
            pass


def test_run_exits_nonzero_without_a_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(ServiceSettings(cache_dir=tmp_path / "missing", port=1))
    assert code == EXIT_NO_CACHE != 0
    assert "manifest.json is missing" in capsys.readouterr().err


def test_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"RECSYS_{name.upper()}" in out for name in ServiceSettings.model_fields)


def test_settings_reject_wildcard_cors_with_credentials() -> None:
    with pytest.raises(ValidationError, match="cannot be combined"):
        ServiceSettings(cors_origins=["*"], cors_allow_credentials=True)
    assert ServiceSettings(cors_origins=["*"]).cors_origins == ["*"]


def test_settings_come_from_recsys_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_PORT", "8123")
    monkeypatch.setenv("RECSYS_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("RECSYS_CACHE_DIR", "some/relative/cache")
    s = ServiceSettings()
    assert s.port == 8123 and s.host == "127.0.0.1" and s.workers == 1
    assert s.cors_origins == ["http://a.example", "http://b.example"]
    assert s.cache_dir == PROJ_ROOT / "some/relative/cache"
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    assert ServiceSettings() == s


def test_cors_is_off_by_default_and_exact_when_configured(
    client: TestClient, int_cache: TinyCache, make_client: Callable[..., TestClient]
) -> None:
    origin = {"origin": "http://a.example"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    with make_client(int_cache.dir, cors_origins=["http://a.example"]) as c:
        assert c.get("/health", headers=origin).headers["access-control-allow-origin"] == "http://a.example"
        other = c.get("/health", headers={"origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# ---------------------------------------------------------------------------------------------------
# hot reload
# ---------------------------------------------------------------------------------------------------


def test_reload_under_concurrent_requests_loses_none(tmp_path: Path, make_client: Callable[..., TestClient]) -> None:
    cache_dir = tmp_path / "cache"
    old_manifest = build_tiny_cache(cache_dir, tiny_interactions(variant=0))
    expected = {old_manifest.version: expected_audiences(cache_dir)}
    products = sorted(expected[old_manifest.version])
    started, rebuilt = threading.Event(), threading.Event()
    new_version: list[str] = []

    def hammer(c: TestClient, seed: int) -> list[tuple[int, dict[str, Any]]]:
        """Request random products until the new version has been served (or the deadline)."""
        rng = np.random.default_rng(seed)
        out: list[tuple[int, dict[str, Any]]] = []
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            pid = products[int(rng.integers(len(products)))]
            r = c.get(f"/recommend/{pid}", params={"n": TINY_N})
            out.append((r.status_code, r.json()))
            started.set()
            if rebuilt.is_set() and out[-1][1].get("model") in new_version and len(out) > 20:
                break
        return out

    with make_client(cache_dir, reload_interval_s=0.02) as c:
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(hammer, c, seed) for seed in range(6)]
            wait_until(started.is_set, "the first answers from the old version", timeout_s=DEADLINE_S, interval_s=0.02)
            manifest = build_tiny_cache(cache_dir, tiny_interactions(variant=1))
            new_version.append(manifest.version)
            expected[manifest.version] = expected_audiences(cache_dir)
            rebuilt.set()
            results = [r for f in futures for r in f.result()]
        health = c.get("/health").json()

    assert new_version[0] != old_manifest.version
    assert expected[new_version[0]] != expected[old_manifest.version], "variant data must change the answers"
    assert results and all(status == 200 for status, _ in results)
    seen_versions = {body["model"] for _, body in results}
    assert seen_versions == set(expected), "answers must come from the old and then the new version only"
    for _, body in results:
        assert as_triples(body) == expected[body["model"]][body["product_id"]]
    assert health["cache"]["version"] == new_version[0] and health["reloads"] >= 1 and health["status"] == "ok"


def test_corrupt_manifest_at_reload_keeps_serving_the_old_version(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    cache_dir = tmp_path / "cache"
    manifest = build_tiny_cache(cache_dir, tiny_interactions())
    expected = expected_audiences(cache_dir)
    pid = next(iter(expected))
    with make_client(cache_dir, reload_interval_s=0.02) as c:
        tmp = cache_dir / "manifest.json.tmp"
        tmp.write_text('{"lookup_dir": "lookup-nope", ')
        os.replace(tmp, cache_dir / "manifest.json")
        wait_until(
            lambda: c.get("/health").json()["last_reload_error"] is not None,
            "the reload error in /health",
            timeout_s=DEADLINE_S,
            interval_s=0.02,
        )
        health = c.get("/health").json()
        assert health["status"] == "degraded" and health["reload_failures"] >= 1
        assert "corrupt" in health["last_reload_error"]["message"]
        assert str(tmp_path) not in json.dumps(health) and health["cache_dir"] == "cache"  # no absolute path anywhere
        assert health["cache"]["version"] == manifest.version
        body = c.get(f"/recommend/{pid}", params={"n": TINY_N}).json()
        assert body["model"] == manifest.version and as_triples(body) == expected[pid]

        fixed = build_tiny_cache(cache_dir, tiny_interactions(variant=1))
        wait_until(
            lambda: c.get("/health").json()["cache"]["version"] == fixed.version,
            "recovery to a valid cache",
            timeout_s=DEADLINE_S,
            interval_s=0.02,
        )
        recovered = c.get("/health").json()
        assert recovered["status"] == "ok" and recovered["last_reload_error"] is None


def test_manual_check_swaps_only_on_manifest_change(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    first = build_tiny_cache(cache_dir, tiny_interactions())
    holder = CacheHolder(cache_dir)
    holder.load()
    assert holder.check_for_update() is False and holder.snapshot.version == first.version
    second = build_tiny_cache(cache_dir, tiny_interactions(variant=1))
    assert holder.check_for_update() is True and holder.snapshot.version == second.version
    assert holder.check_for_update() is False and holder.reloads == 1
    (cache_dir / "manifest.json").unlink()
    assert holder.check_for_update() is False and holder.snapshot.version == second.version
    assert holder.last_error is not None and "missing" in holder.last_error.message
    assert holder.snapshot.manifest == second and holder.snapshot.manifest.version == second.version
