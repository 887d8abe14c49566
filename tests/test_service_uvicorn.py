"""The service as a real process: `python -m service` under uvicorn on 127.0.0.1, queried with httpx."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from recsys.config import PROJ_ROOT

if str(PROJ_ROOT) not in sys.path:  # `service` is not in the installed package list (pyproject: recsys* only)
    sys.path.insert(0, str(PROJ_ROOT))

from service.main import EXIT_BAD_CONFIG, EXIT_NO_CACHE
from service.testing import TINY_N, build_tiny_cache, expected_audiences, tiny_interactions

pytestmark = pytest.mark.server

DEADLINE_S = 60.0  # upper bound for start-up/reload on a loaded machine; never asserted as a timing
# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the exit status says "terminated".
CLEAN_EXIT = {0, -signal.SIGTERM}


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(cache_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment for `python -m service` on 127.0.0.1:`port` over `cache_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_") or k == "RECSYS_ROOT"}
    env.update({"RECSYS_CACHE_DIR": str(cache_dir), "RECSYS_HOST": "127.0.0.1", "RECSYS_PORT": str(port),
                "RECSYS_LOG_LEVEL": "warning", **extra})
    return env


def start_service(env: dict[str, str]) -> subprocess.Popen[str]:
    """Launch `python -m service` from the project root (output captured)."""
    return subprocess.Popen([sys.executable, "-m", "service"], cwd=PROJ_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(predicate, what: str, proc: subprocess.Popen[str] | None = None) -> None:
    """Poll `predicate` until true; fail (with the server's stderr) after DEADLINE_S."""
    end = time.monotonic() + DEADLINE_S
    while True:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode} while waiting for {what}: {proc.stderr.read()}")
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str]) -> int:
    """SIGTERM the server we started and return its exit code (SIGKILL only if it hangs)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    """A tiny real cache."""
    build_tiny_cache(tmp_path / "cache", tiny_interactions())
    return tmp_path / "cache"


@pytest.fixture()
def server(cache_dir: Path) -> Iterator[dict[str, Any]]:
    """A single-worker server with polling off (reloads only on SIGHUP), ready to answer."""
    port = free_port()
    proc = start_service(service_env(cache_dir, port, RECSYS_RELOAD_INTERVAL_S="0"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200, "the server to be ready", proc)
        yield {"proc": proc, "base": base, "cache_dir": cache_dir}
    finally:
        stop(proc)


def test_real_server_answers_like_the_cache(server: dict[str, Any]) -> None:
    expected = expected_audiences(server["cache_dir"])
    with httpx.Client(base_url=server["base"], timeout=10) as http:
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["cache"]["n"] == TINY_N
        for pid, triples in expected.items():
            body = http.get(f"/recommend/{pid}", params={"n": TINY_N}).json()
            assert [(r["customer_id"], r["score"], r["rank"]) for r in body["recommendations"]] == triples
        batch = http.post("/recommend/batch", json={"product_ids": list(expected), "n": 2})
        assert batch.status_code == 200 and batch.json()["count"] == len(expected)
        assert http.get("/products/sample", params={"n": 2, "seed": 3}).json()["count"] == 2
        bad = http.get("/recommend/not-a-number")
        assert bad.status_code == 422 and "integers" in bad.text
        malformed = http.post("/recommend/batch", content=b"{", headers={"content-type": "application/json"})
        assert malformed.status_code == 422 and "JSON decode error" in malformed.text
        assert http.get("/openapi.json").json()["info"]["title"]
    assert stop(server["proc"]) in CLEAN_EXIT
    assert "Traceback" not in server["proc"].stderr.read()


def test_sighup_reloads_a_new_cache_version(server: dict[str, Any]) -> None:
    with httpx.Client(base_url=server["base"], timeout=10) as http:
        old = http.get("/health").json()["cache"]["version"]
        new = build_tiny_cache(server["cache_dir"], tiny_interactions(variant=1))["version"]
        assert http.get("/health").json()["cache"]["version"] == old  # polling is off: nothing changes by itself
        server["proc"].send_signal(signal.SIGHUP)
        wait_until(lambda: http.get("/health").json()["cache"]["version"] == new, "the SIGHUP reload", server["proc"])
        assert http.get("/recommend/101").json()["model"] == new


def health_pids(base: str, tries: int = 40) -> set[int]:
    """Worker pids answering /health over `tries` fresh connections (each httpx.get opens its own)."""
    return {httpx.get(f"{base}/health", timeout=5).json()["pid"] for _ in range(tries)}


def test_two_workers_share_one_port_and_both_get_connections(cache_dir: Path) -> None:
    port = free_port()
    proc = start_service(service_env(cache_dir, port, RECSYS_WORKERS="2"))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200, "the workers", proc)
        wait_until(lambda: len(psutil.Process(proc.pid).children()) >= 2, "two worker processes", proc)
        children = {c.pid for c in psutil.Process(proc.pid).children()}  # the workers (+ multiprocessing's tracker)
        # per-worker SO_REUSEPORT listeners: the kernel spreads new connections over both workers
        wait_until(lambda: len(health_pids(base)) == 2, "connections to reach both workers", proc)
        workers = health_pids(base)
        assert len(workers) == 2 and workers <= children
        with httpx.Client(base_url=base, timeout=10) as http:
            assert all(http.get("/recommend/101").status_code == 200 for _ in range(20))
        # a killed worker is replaced; its listener goes with it and the replacement serves the port again
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in health_pids(base, 10) and len(health_pids(base)) == 2,
                   "the replacement worker to serve", proc)
    finally:
        assert stop(proc) in CLEAN_EXIT


def test_missing_cache_exits_nonzero_with_a_clear_message(tmp_path: Path) -> None:
    proc = start_service(service_env(tmp_path / "nothing-here", free_port()))
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == EXIT_NO_CACHE
    assert "manifest.json is missing" in err and "Traceback" not in err


def test_wildcard_cors_with_credentials_is_refused(cache_dir: Path) -> None:
    env = service_env(cache_dir, free_port(), RECSYS_CORS_ORIGINS="*", RECSYS_CORS_ALLOW_CREDENTIALS="true")
    proc = start_service(env)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == EXIT_BAD_CONFIG and "cannot be combined" in err
