"""Reasons: every part of every served pair is true of the log, and the parts add up to the served score."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys.cache.build import build_cache
from recsys.cache.lookup import AudienceLookup
from recsys.features.text import tokenize_names
from recsys.reasons import EngagementPart, Explainer, ModelPart, NamePart, SimilarProductsPart, reason_text
from service.app import create_app
from service.settings import ServiceSettings

from _logs import random_log, settings_for

N, DEPTH = 10, 30
PARAMS = {"seed": 0, "token_user_cap": 50, "factors": 8, "iterations": 3, "num_threads": 1, "neighbours": 5}


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return random_log(n_rows=3000, n_users=250, n_products=60, seed=11)


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory, log: pd.DataFrame) -> dict[str, Path]:
    out = {}
    for name in ("content", "name_knn", "activity", "als"):
        cache_dir = tmp_path_factory.mktemp(f"reasons-{name}")
        build_cache(log, name, settings_for(name, PARAMS), cache_dir, n=N, candidates=DEPTH)
        out[name] = cache_dir
    return out


def history(log: pd.DataFrame) -> dict[object, set[str]]:
    """Every customer's name tokens (of every product they touched)."""
    pairs = log[["customer_id", "product_name"]].drop_duplicates()
    parents, tokens = tokenize_names([n if isinstance(n, str) else None for n in pairs["product_name"].tolist()])
    customers = pairs["customer_id"].to_numpy()[parents]
    out: dict[object, set[str]] = {}
    for c, t in zip(customers.tolist(), tokens.tolist(), strict=True):
        out.setdefault(c, set()).add(str(t))
    return out


@pytest.mark.parametrize("name", ["content", "name_knn", "activity", "als"])
def test_every_reason_is_true_of_the_log_and_adds_up(caches: dict[str, Path], log: pd.DataFrame, name: str) -> None:
    lookup = AudienceLookup.open(caches[name])
    explainer = Explainer.of(lookup)
    rows = log.groupby("customer_id", observed=True).size()
    distinct = log.groupby("customer_id", observed=True)["product_id"].nunique()
    last = log.dropna(subset=["event_date"]).groupby("customer_id", observed=True)["event_date"].max()
    tokens_of = history(log)
    touched = set(zip(log["customer_id"], log["product_id"], strict=True))
    names = log.drop_duplicates("product_id")[["product_id", "product_name"]]
    parents, tokens = tokenize_names([n if isinstance(n, str) else None for n in names["product_name"].tolist()])
    own_tokens: dict[object, set[str]] = {p: set() for p in names["product_id"].tolist()}
    for p, t in zip(names["product_id"].to_numpy()[parents].tolist(), tokens.tolist(), strict=True):
        own_tokens[p].add(str(t))
    checked = 0
    texts = []
    for pid in lookup.product_ids().tolist():
        customers, scores, _ = lookup.top(pid, N)
        found = explainer.explain_ids(pid, customers, scores)
        for cid, score, r in zip(customers.tolist(), scores.tolist(), found, strict=True):
            f = r.customer
            assert (f.interactions, f.products) == (rows[cid], distinct[cid])
            assert f.last_event == (last[cid].date().isoformat() if cid in last.index else None)
            assert r.score == pytest.approx(score, rel=1e-6) and r.adds_up, (pid, cid, r)
            kinds = [p.kind for p in r.parts]
            own = own_tokens[pid]
            for part in r.parts:
                if isinstance(part, NamePart):
                    assert part.tokens and all(t.token in tokens_of[cid] and t.token in own for t in part.tokens)
                    assert sum(t.value for t in part.tokens) <= part.value + 1e-6  # 7-digit rounding
                if isinstance(part, SimilarProductsPart):
                    assert all((cid, p.product_id) in touched and p.product_id != pid for p in part.products)
                if isinstance(part, EngagementPart):
                    assert part.value == pytest.approx(part.weight * f.engagement, rel=1e-5, abs=1e-6)
            expected = {
                "content": (["engagement", "name"], ["engagement"]),
                "name_knn": (["engagement", "similar_products"], ["engagement"]),
                "activity": (["engagement"],),
                "als": (["model"],),
            }[name]
            assert kinds in [list(e) for e in expected], kinds
            if name == "als":
                assert isinstance(r.parts[0], ModelPart) and r.parts[0].value == pytest.approx(score)
            checked += 1
            texts.append(reason_text(r))
    assert checked >= 100 and all("interactions" in t for t in texts)
    assert name != "content" or any("name" in t for t in texts)


@pytest.fixture(scope="module")
def client(caches: dict[str, Path]) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceSettings(cache_dir=caches["content"], reload_interval_s=0))) as c:
        yield c


def test_explain_on_recommend_and_campaigns(client: TestClient, caches: dict[str, Path]) -> None:
    lookup = AudienceLookup.open(caches["content"])
    pid = int(lookup.product_ids()[3])
    plain = client.get(f"/recommend/{pid}?n=5").json()
    body = client.get(f"/recommend/{pid}?n=5&explain=true").json()
    assert all("reasons" not in r for r in plain["recommendations"])  # the fast lane's bytes: unchanged
    expected = Explainer.of(lookup).explain_ids(pid, *lookup.top(pid, 5)[:2])
    assert [r["reasons"] for r in body["recommendations"]] == [e.model_dump(mode="json") for e in expected]
    products = [int(p) for p in lookup.product_ids()[:6]]
    camp = client.post("/campaigns?explain=true", json={"product_ids": products, "n": 8, "max_per_customer": 1})
    assert camp.status_code == 200, camp.text
    for a in camp.json()["audiences"]:
        for c in a["customers"]:
            assert c["reasons"]["adds_up"] and c["reasons"]["score"] == pytest.approx(c["score"], rel=1e-6)


def test_a_cache_without_reasons_says_so(tmp_path: Path, caches: dict[str, Path]) -> None:
    copy = tmp_path / "no-reasons"
    shutil.copytree(caches["activity"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["reasons"] = None
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with TestClient(create_app(ServiceSettings(cache_dir=copy, reload_interval_s=0))) as c:
        pid = int(AudienceLookup.open(copy).product_ids()[0])
        assert c.get(f"/recommend/{pid}?n=3").status_code == 200
        r = c.get(f"/recommend/{pid}?n=3&explain=true")
        assert r.status_code == 422 and "stores no reasons" in r.json()["detail"][0]["msg"]
        assert c.post("/campaigns?explain=true", json={"product_ids": [pid], "n": 3}).status_code == 422
    assert np.asarray(AudienceLookup.open(copy).manifest.reasons is None)
