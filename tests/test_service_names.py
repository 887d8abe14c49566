"""POST /audiences/by-name and catalogue products in the cache: real caches built from hand-made logs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys.basis import MAX_NAME_CHARS
from recsys.cache.build import NewProductsModel, build_cache
from recsys.cache.lookup import AudienceLookup
from recsys.data.catalogue import Catalogue
from recsys.features.text import query_tokens
from recsys.rankers import make_ranker

from _logs import random_log

CONTENT = {"seed": 0, "affinity_weight": 0.5, "cold_affinity_weight": 0.9, "token_user_cap": 1000}


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return random_log(n_rows=2500, n_users=250, n_products=60, seed=31)


@pytest.fixture(scope="module")
def content_cache(log: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A content cache (its own name index) with two catalogue products not yet in the log."""
    out = tmp_path_factory.mktemp("names")
    catalogue = Catalogue.build([7001, 7002, 5], ["عطر 004 فاخر", "Gadget Pro", "renamed known product"])
    build_cache(log, "content", CONTENT, out, n=20, candidates=30, catalogue=catalogue)
    return out


@pytest.fixture(scope="module")
def client(content_cache: Path, make_client: Callable[..., TestClient]) -> Iterator[TestClient]:
    with make_client(content_cache) as c:
        yield c


def test_catalogue_products_are_ranked_from_their_names_and_served(content_cache: Path, log: pd.DataFrame) -> None:
    lookup = AudienceLookup.open(content_cache)
    assert lookup.known(7001) and lookup.known(7002)
    assert lookup.basis(7001) == "name" and lookup.basis(7002) == "no_known_token" and lookup.basis(5) == "history"
    assert lookup.manifest.counts.new_catalogue == 2  # product 5 is in the log: its history wins
    ranker = make_ranker("content", CONTENT).fit(log)
    expected = ranker.rank([7001], 20, Catalogue.build([7001], ["عطر 004 فاخر"])).to_frame()
    customers, scores, cold = lookup.top(7001, 20)
    assert cold and customers.tolist() == expected["customer_id"].tolist()
    np.testing.assert_allclose(scores, expected["score"], rtol=1e-6)


def test_by_name_answers_a_name_never_seen_with_evidence_that_adds_up(client: TestClient, log: pd.DataFrame) -> None:
    body = client.post("/audiences/by-name", json={"name": "زيت زيتون ممتاز 3 لتر", "n": 15}).json()
    assert body["basis"] == "name" and body["fallback"] is False and body["model"] == "content"
    assert body["count"] == 15 and [c["rank"] for c in body["customers"]] == list(range(1, 16))
    assert set(body["known_tokens"]) <= set(query_tokens("زيت زيتون ممتاز 3 لتر"))
    assert body["similar_products"] and all(p["similarity"] > 0 for p in body["similar_products"])
    names = log.groupby("customer_id")["product_name"].apply(
        lambda s: {t for n in s.dropna() for t in query_tokens(str(n))}
    )
    for c in body["customers"]:
        ev = c["evidence"]
        parts = ev["engagement"] + sum(t["contribution"] for t in ev["tokens"])
        assert parts == pytest.approx(c["score"], rel=1e-6)  # at most 5 tokens listed; these names have fewer
        for t in ev["tokens"]:
            assert t["token"] in names[c["customer_id"]]  # the token really is in the customer's history
    scores = [c["score"] for c in body["customers"]]
    assert scores == sorted(scores, reverse=True)


def test_by_name_excludes_customers(client: TestClient) -> None:
    first = client.post("/audiences/by-name", json={"name": "عطر 005", "n": 5}).json()
    top = first["customers"][0]["customer_id"]
    again = client.post(
        "/audiences/by-name", json={"name": "عطر 005", "n": 5, "exclude_customers": [top, 10**9]}
    ).json()
    assert top not in [c["customer_id"] for c in again["customers"]] and again["count"] == 5


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("!!! ??? ...", True),  # only punctuation: no token
        ("Zyxwvut Qqq", True),  # tokens the log never saw
        ("عطر\x00\x07 004\ttest", False),  # control characters become spaces
        ("Coffee عطر 500مل mixed scripts", False),
    ],
)
def test_names_without_usable_tokens_get_the_fallback_flagged(client: TestClient, name: str, fallback: bool) -> None:
    response = client.post("/audiences/by-name", json={"name": name, "n": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["fallback"] is fallback
    if fallback:
        assert body["basis"] == "no_known_token" and "engagement order" in body["reason"]
        assert body["count"] == 5 and all(c["evidence"]["name"] == 0 for c in body["customers"])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"name": ""}, "empty or only white space"),
        ({"name": "   \t\n"}, "empty or only white space"),
        ({"name": "\x00\x01"}, "empty or only white space"),
        ({"name": "x" * 10_000}, f"at most {MAX_NAME_CHARS}"),
        ({"name": "ok", "n": 0}, "greater than or equal to 1"),
        ({"name": "ok", "n": 5000}, "less than or equal to"),
        ({"name": "ok", "extra": 1}, "Extra inputs"),
        ({"nam": "ok"}, "Field required"),
        ({"name": 5}, "valid string"),
    ],
)
def test_bad_requests_get_a_clear_422(client: TestClient, payload: dict[str, Any], message: str) -> None:
    response = client.post("/audiences/by-name", json=payload)
    assert response.status_code == 422
    assert message in response.text


def test_a_cache_whose_new_products_model_reads_no_names_answers_its_global_order(
    log: pd.DataFrame, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    build_cache(log, "activity", {"seed": 0}, tmp_path, n=10, new_products=NewProductsModel("popularity", {"seed": 0}))
    with make_client(tmp_path) as c:
        body = c.post("/audiences/by-name", json={"name": "عطر 004", "n": 4}).json()
    lookup = AudienceLookup.open(tmp_path)
    assert lookup.names is None and lookup.manifest.new_products is not None
    assert body["fallback"] is True and body["basis"] == "names_unused" and body["count"] == 4
    customers, _, _ = lookup.top_global(4)
    assert [c["customer_id"] for c in body["customers"]] == customers.tolist()


def test_a_category_new_products_model_answers_with_its_category(
    log: pd.DataFrame, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    model = NewProductsModel("category_popularity", {"seed": 0, "categories": {"k": 4, "components": 5, "n_init": 2}})
    build_cache(log, "activity", {"seed": 0}, tmp_path, n=10, new_products=model)
    with make_client(tmp_path) as c:
        body = c.post("/audiences/by-name", json={"name": "زيت زيتون 2 لتر", "n": 6}).json()
    assert body["model"] == "category_popularity" and body["basis"] == "name"
    assert body["category"] is not None and body["category"]["tokens"]
    ranker = make_ranker(model.ranker, model.params).fit(log)
    expected = ranker.rank([99999], 6, Catalogue.build([99999], ["زيت زيتون 2 لتر"])).to_frame()
    assert [c["customer_id"] for c in body["customers"]] == expected["customer_id"].tolist()
