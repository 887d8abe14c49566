"""The fast lane answers only well-formed GET /recommend/{id}[?n=k], with exactly the route's bytes."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from service import fastlane
from service.fastlane import answer
from service.state import open_snapshot
from service.testing import TINY_N, client_score, expected_audiences

from conftest import TinyCache

# every path/query shape the lane must either answer exactly or hand to FastAPI
INT_URLS = [
    "/recommend/101",
    "/recommend/101?n=1",
    f"/recommend/101?n={TINY_N}",
    "/recommend/999999?n=3",
    "/recommend/-5",
    "/recommend/+101",
    "/recommend/%20101",
    "/recommend/0101?n=2",
    "/recommend/101?n=0",
    f"/recommend/101?n={TINY_N + 1}",
    "/recommend/101?n=05",
    "/recommend/101?n=-1",
    "/recommend/101?n=abc",
    "/recommend/101?n=",
    "/recommend/101?n=2&n=3",
    "/recommend/101?n=2&x=1",
    "/recommend/101?x=1",
    "/recommend/101?N=2",
    "/recommend/101/",
    "/recommend/",
    "/recommend/batch",
    "/recommend/abc",
    "/recommend/1.5",
    "/recommend/99999999999999999999",
    "/recommend/%F0%9F%98%80",
    "/recommend/101?n=99999999999",
    "/products/sample?n=2&seed=1",
    "/nope",
]
STR_URLS = [
    "/recommend/SKU101A",
    "/recommend/SKU101A?n=2",
    "/recommend/unknown?n=3",
    "/recommend/101",
    "/recommend/SKU%20101A",
    "/recommend/batch",
    "/recommend/SKU101A?n=0",
    "/recommend/%E2%82%AC",
]


@pytest.fixture(scope="module")
def caches(int_cache: TinyCache, str_cache: TinyCache) -> dict[str, Path]:
    """Tiny real caches with integer and with string product ids."""
    return {"int": int_cache.dir, "str": str_cache.dir}


@pytest.fixture(scope="module")
def clients(
    caches: dict[str, Path], make_client: Callable[..., TestClient]
) -> Iterator[dict[tuple[str, bool], TestClient]]:
    """One client per (id kind, fast lane on/off)."""
    made = {(kind, lane): make_client(path, fast_lane=lane) for kind, path in caches.items() for lane in (True, False)}
    for c in made.values():
        c.__enter__()
    yield made
    for c in made.values():
        c.__exit__(None, None, None)


def scope_for(path: str, query: bytes, cache_dir: Path, method: str = "GET") -> dict[str, Any]:
    """A minimal ASGI http scope whose `app` serves the cache at `cache_dir`."""
    holder = SimpleNamespace(snapshot=open_snapshot(cache_dir))
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "app": SimpleNamespace(state=SimpleNamespace(holder=holder)),
    }


@pytest.mark.parametrize(("kind", "url"), [("int", u) for u in INT_URLS] + [("str", u) for u in STR_URLS])
def test_lane_and_fastapi_send_identical_responses(
    clients: dict[tuple[str, bool], TestClient], kind: str, url: str
) -> None:
    fast, slow = clients[(kind, True)].get(url), clients[(kind, False)].get(url)
    assert fast.status_code == slow.status_code and fast.status_code != 500, (url, fast.text)
    assert fast.headers.raw == slow.headers.raw, url
    assert fast.content == slow.content, url


def test_lane_answers_exactly_the_well_formed_shapes(caches: dict[str, Path]) -> None:
    int_dir = caches["int"]
    expected = expected_audiences(int_dir)[101]
    body = answer(scope_for("/recommend/101", b"n=2", int_dir))
    assert body is not None
    got = orjson.loads(body)
    assert [(r["customer_id"], r["score"], r["rank"]) for r in got["recommendations"]] == expected[:2]
    assert got["product_id"] == 101 and got["count"] == 2 and got["cold_start"] is False
    assert orjson.loads(answer(scope_for("/recommend/424242", b"", int_dir)) or b"null")["cold_start"] is True
    handed_on = [
        ("/recommend/101", b"n=0"),
        ("/recommend/101", b"n=06"),
        ("/recommend/101", b"n=2&x=1"),
        ("/recommend/101", b"x=1"),
        ("/recommend/abc", b""),
        ("/recommend/101/", b""),
        ("/recommend/", b""),
        ("/health", b""),
        ("/recommend/101", f"n={TINY_N + 1}".encode()),
    ]
    for path, query in handed_on:
        assert answer(scope_for(path, query, int_dir)) is None, (path, query)
    assert answer(scope_for("/recommend/101", b"", int_dir, method="POST")) is None
    assert answer(scope_for("/recommend/101", b"", int_dir, method="HEAD")) is None


def test_scores_are_float32_in_shortest_form(
    clients: dict[tuple[str, bool], TestClient], caches: dict[str, Path]
) -> None:
    raw = clients[("int", True)].get(f"/recommend/101?n={TINY_N}").content
    parsed = orjson.loads(raw)
    snapshot = open_snapshot(caches["int"])
    _, scores, _ = snapshot.lookup.top(101, TINY_N)
    assert [r["score"] for r in parsed["recommendations"]] == [client_score(s) for s in scores]
    assert scores.dtype == np.float32
    tokens = re.findall(rb'"score":([^,}]+)', raw)
    assert len(tokens) == len(scores)
    for token, s in zip(
        tokens, scores, strict=True
    ):  # printed in float32's shortest form: round-trips, no float64 noise
        assert np.float32(float(token)) == s and float(token) == float(str(s))


def test_cors_wraps_the_lane(caches: dict[str, Path], make_client: Callable[..., TestClient]) -> None:
    origin = "http://a.example"
    with make_client(caches["int"], cors_origins=[origin]) as c:
        r = c.get("/recommend/101?n=2", headers={"Origin": origin})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin


def test_a_fault_inside_the_lane_falls_back_to_fastapis_500(
    caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., TestClient]
) -> None:
    with make_client(caches["int"]) as c:
        lookup = c.app.state.holder.snapshot.lookup  # type: ignore[attr-defined]

        def broken(*_: Any) -> Any:
            raise OSError("simulated read fault")

        monkeypatch.setattr(lookup, "top", broken)
        r = c.get("/recommend/101?n=2")
    assert r.status_code == 500 and r.json() == {"detail": "internal server error"}


def test_faults_are_logged_with_a_traceback_rate_limited_and_client_errors_are_not(
    caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fastlane, "FALLBACKS", fastlane.FallbackLog(interval_s=3600.0))
    caplog.set_level(logging.DEBUG, logger="recsys.service")
    assert answer(scope_for("/recommend/abc", b"", caches["int"])) is None  # a client mistake: expected, not logged
    assert answer(scope_for("/recommend/101", b"n=0", caches["int"])) is None
    assert caplog.records == []

    scope = scope_for("/recommend/101", b"n=2", caches["int"])

    def broken(*_: Any) -> Any:
        raise OSError("simulated read fault")

    monkeypatch.setattr(scope["app"].state.holder.snapshot.lookup, "top", broken)
    for _ in range(3):
        assert answer(scope) is None
    warnings_ = [r for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(warnings_) == 1 and len(debug) == 2  # one warning per interval, the rest at debug
    for record in warnings_ + debug:
        assert "/recommend/101" in record.getMessage() and record.exc_info is not None
        assert "simulated read fault" in caplog.text
    assert fastlane.FALLBACKS.unlogged == 2  # reported with the next warning


AUTH_KEY = "lane-parity-key-0123456789"
AUTH_HEADERS: dict[str, dict[str, str]] = {
    "none": {},
    "wrong": {"Authorization": "Bearer not-the-right-key-000000"},
    "malformed": {"Authorization": f"Token {AUTH_KEY}"},
    "good": {"Authorization": f"Bearer {AUTH_KEY}"},
}


@pytest.fixture(scope="module")
def keyed_clients(caches: dict[str, Path], make_client: Callable[..., TestClient]) -> Iterator[dict[bool, TestClient]]:
    """Integer-id clients that require AUTH_KEY, with the fast lane on and off."""
    made = {lane: make_client(caches["int"], fast_lane=lane, api_keys=AUTH_KEY) for lane in (True, False)}
    for c in made.values():
        c.__enter__()
    yield made
    for c in made.values():
        c.__exit__(None, None, None)


@pytest.mark.parametrize("auth", list(AUTH_HEADERS))
@pytest.mark.parametrize("url", ["/recommend/101", "/recommend/101?n=2", "/recommend/abc", "/recommend/101?n=0"])
def test_lane_and_fastapi_send_identical_auth_answers(
    keyed_clients: dict[bool, TestClient], auth: str, url: str
) -> None:
    fast = keyed_clients[True].get(url, headers=AUTH_HEADERS[auth])
    slow = keyed_clients[False].get(url, headers=AUTH_HEADERS[auth])
    assert fast.status_code == slow.status_code and fast.status_code != 500, (url, fast.text)
    assert (fast.status_code == 401) == (auth != "good")
    assert fast.headers.raw == slow.headers.raw and fast.content == slow.content, (auth, url)
