"""Locust scenario for the audience service: a realistic, fully validated request mix.

Mix (task weights): GET /recommend/{known id} with n in {5, 10, 20, 50, 100} (80), unknown ids that
must come back ``cold_start: true`` (5), POST /recommend/batch of 10-50 ids (5), an exclusion
spot-check at the deepest n (8), GET /health (2). Every response is validated (status, product id,
count == min(n, available), ranks 1..count, scores non-increasing, cold-start flag, and for the
spot-check products: no recommended customer ever interacted with the product); a violation is
reported to locust as a failure with the reason.

Ids, audience sizes and the exclusion sample come from a fixture JSON built once from the cache and
data/prepared/interactions.parquet (``loadtest.fixture.build_fixture``). The runner passes its path in
``LOADTEST_FIXTURE``; without it each locust process builds one from the default cache (once).
Think time per user: ``LOADTEST_WAIT="0.1,0.3"`` seconds (default; see loadtest/README.md).

Run by ``python -m loadtest.run``, or alone:
``locust -f loadtest/locustfile.py --headless -u 1000 -r 50 -t 60s --host http://127.0.0.1:8000``.
"""

from __future__ import annotations

import gc
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, task

json_loads: Callable[[str | bytes], Any]
try:
    from orjson import loads as json_loads
except ImportError:  # orjson ships with the service extra; plain json works too
    json_loads = json.loads

RNG = random.Random()  # nosec B311 # picks which product to request; load-test traffic, not security
FIXTURE_ENV = "LOADTEST_FIXTURE"
API_KEY_ENV = "LOADTEST_API_KEY"  # when set, every request carries Authorization: Bearer <key>
WAIT_ENV = "LOADTEST_WAIT"
DEFAULT_WAIT = (0.1, 0.3)
N_CHOICES = (5, 10, 20, 50, 100)
BATCH_SIZES = (10, 50)


@dataclass(frozen=True)
class Fixture:
    """What the users need to know about the serving cache, loaded once per process."""

    known_ids: list[Any]
    available: dict[str, tuple[int, bool]]  # str(product id) -> (audience size, cold_start flag)
    unknown_ids: list[Any]
    fallback_size: int
    n_max: int
    exclusion: dict[str, frozenset[Any]]  # str(product id) -> customers who interacted with it
    exclusion_skipped: str | None

    @cached_property
    def spot_ids(self) -> list[str]:
        """Products with an exclusion sample (ids as path text; responses are compared as text)."""
        return list(self.exclusion)

    @property
    def n_choices(self) -> tuple[int, ...]:
        """The requested depths that the cache allows (all of N_CHOICES when N = 100)."""
        allowed = tuple(n for n in N_CHOICES if n <= self.n_max)
        return allowed or (self.n_max,)


def fixture_from_dict(raw: dict[str, Any]) -> Fixture:
    """A Fixture from the JSON written by ``loadtest.fixture.build_fixture``."""
    return Fixture(
        known_ids=list(raw["known_ids"]),
        available={k: (int(v[0]), bool(v[1])) for k, v in raw["available"].items()},
        unknown_ids=list(raw["unknown_ids"]),
        fallback_size=int(raw["fallback_size"]),
        n_max=int(raw["n_max"]),
        exclusion={k: frozenset(v) for k, v in raw["exclusion"].items()},
        exclusion_skipped=raw.get("exclusion_skipped"),
    )


@cache
def load_fixture() -> Fixture:
    """The fixture named by $LOADTEST_FIXTURE, else one built from the default cache (once per process).

    The fixture's ~100k objects then leave the garbage collector's view (`gc.freeze`): full collections
    in the load generator would otherwise walk them all and stall every user of the process.
    """
    path = os.environ.get(FIXTURE_ENV)
    if path:
        fixture = fixture_from_dict(json.loads(Path(path).read_text()))
    else:
        from loadtest.fixture import build_fixture  # heavy imports only in this fallback

        fixture = fixture_from_dict(build_fixture())
    gc.collect()
    gc.freeze()
    return fixture


def wait_range() -> tuple[float, float]:
    """Think-time bounds from $LOADTEST_WAIT ("min,max" seconds), default 0.1-0.3 s."""
    text = os.environ.get(WAIT_ENV, "")
    if not text:
        return DEFAULT_WAIT
    low, high = (float(part) for part in text.split(","))
    return low, high


def check_audience(body: Any, pid: Any, n: int, fx: Fixture) -> str | None:
    """Why one /recommend answer is wrong, or None when it is right."""
    if not isinstance(body, dict):
        return "body is not a JSON object"
    key = str(pid)
    if str(body.get("product_id")) != key:
        return f"product_id {body.get('product_id')!r} != requested {pid!r}"
    size, cold = fx.available.get(key, (fx.fallback_size, True))
    recs = body.get("recommendations")
    count = body.get("count")
    if not isinstance(recs, list) or count != len(recs):
        return f"count {count!r} does not match {len(recs) if isinstance(recs, list) else 'missing'} recommendations"
    if count != min(n, size):
        return f"count {count} != min(n={n}, available={size})"
    if body.get("cold_start") is not cold:
        return f"cold_start {body.get('cold_start')!r}, expected {cold}"
    if [r.get("rank") for r in recs] != list(range(1, count + 1)):
        return "ranks are not 1..count"
    scores = [r.get("score") for r in recs]
    if any(not isinstance(s, int | float) for s in scores) or any(
        a < b for a, b in zip(scores, scores[1:], strict=False)
    ):
        return "scores are not non-increasing numbers"
    banned = fx.exclusion.get(key)
    if banned:
        seen = banned.intersection(r.get("customer_id") for r in recs)
        if seen:
            return f"recommended customers who already interacted with product {pid}: {sorted(seen)[:5]}"
    return None


def check_batch(body: Any, pids: list[Any], n: int, fx: Fixture) -> str | None:
    """Why one /recommend/batch answer is wrong, or None when it is right."""
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return "batch body lacks an items list"
    items = body["items"]
    if body.get("count") != len(pids) or len(items) != len(pids):
        return f"batch returned {len(items)} items (count {body.get('count')!r}) for {len(pids)} ids"
    for pid, item in zip(pids, items, strict=True):
        problem = check_audience(item, pid, n, fx)
        if problem:
            return f"item {pid}: {problem}"
    return None


def check_health(body: Any) -> str | None:
    """Why a /health answer is wrong, or None."""
    if not isinstance(body, dict) or body.get("ready") is not True:
        return "health does not report ready"
    return None


class AudienceUser(FastHttpUser):
    """One marketing tool asking for audiences, with a short think time between calls."""

    wait_time = between(*wait_range())

    def on_start(self) -> None:
        """Bind the process-wide fixture (loaded on first use, never per request) and the API key, if any."""
        self.fx = load_fixture()
        key = os.environ.get(API_KEY_ENV)
        self.auth = {"Authorization": f"Bearer {key}"} if key else None

    def _get(self, path: str, name: str, check: Any) -> None:
        """GET `path`, validate the JSON body with `check(body)` and report failures to locust."""
        with self.client.get(path, name=name, catch_response=True, headers=self.auth) as resp:
            self._judge(resp, check)

    @staticmethod
    def _judge(resp: Any, check: Any) -> None:
        """Mark `resp` failed on a non-200 status, bad JSON or a failed check."""
        if resp.status_code != 200:
            resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
            return
        try:
            body = json_loads(resp.content)
        except ValueError as exc:
            resp.failure(f"invalid JSON: {exc}")
            return
        problem = check(body)
        if problem:
            resp.failure(problem)
        else:
            resp.success()

    @task(80)
    def recommend_known(self) -> None:
        """Top-n audience of a random known product."""
        pid = RNG.choice(self.fx.known_ids)
        n = RNG.choice(self.fx.n_choices)
        self._get(f"/recommend/{pid}?n={n}", "/recommend/[known]", lambda b: check_audience(b, pid, n, self.fx))

    @task(5)
    def recommend_unknown(self) -> None:
        """A product the cache has never seen: the global fallback with cold_start true."""
        pid = RNG.choice(self.fx.unknown_ids)
        n = RNG.choice(self.fx.n_choices)
        self._get(f"/recommend/{pid}?n={n}", "/recommend/[unknown]", lambda b: check_audience(b, pid, n, self.fx))

    @task(8)
    def exclusion_spot_check(self) -> None:
        """A product with known interactions at full depth: none of its past customers may be recommended."""
        if not self.fx.exclusion:
            self.recommend_known()
            return
        pid = RNG.choice(self.fx.spot_ids)
        n = max(self.fx.n_choices)
        self._get(f"/recommend/{pid}?n={n}", "/recommend/[spot-check]", lambda b: check_audience(b, pid, n, self.fx))

    @task(5)
    def recommend_batch(self) -> None:
        """10-50 products in one call, one of them unknown."""
        size = RNG.randint(*BATCH_SIZES)
        pids = RNG.sample(self.fx.known_ids, min(size - 1, len(self.fx.known_ids)))
        pids.append(RNG.choice(self.fx.unknown_ids))
        n = RNG.choice(self.fx.n_choices)
        with self.client.post(
            "/recommend/batch",
            json={"product_ids": pids, "n": n},
            name="/recommend/batch",
            catch_response=True,
            headers=self.auth,
        ) as resp:
            self._judge(resp, lambda b: check_batch(b, pids, n, self.fx))

    @task(2)
    def health(self) -> None:
        """Readiness probe, as a monitor would send it."""
        self._get("/health", "/health", check_health)
