"""Shared fixtures: tiny real caches, in-process service clients, free ports and real server processes.

Log builders for hand-made interaction tables live in ``tests/_logs.py``; process plumbing (ports,
waiting, stopping a process tree) in ``service.processes``, shared with the benchmarks and the load test.
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recsys.cache.manifest import CacheManifest
from service.app import create_app
from service.processes import free_port, http_ok, service_env, start_module, stop_process_tree, wait_until
from service.settings import ServiceSettings
from service.testing import build_tiny_cache, expected_audiences, tiny_interactions

with warnings.catch_warnings():  # starlette suggests httpx2 for its TestClient; httpx is what we have
    warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
    from fastapi.testclient import TestClient

SERVER_DEADLINE_S = 60.0  # upper bound for a server to start or stop on a loaded machine; never asserted as a timing


@dataclass(frozen=True)
class TinyCache:
    """A tiny real cache, the log it was built from, its manifest and its ground truth."""

    dir: Path
    frame: Any
    manifest: CacheManifest
    expected: dict[Any, list[tuple[Any, float, int]]]


def tiny_cache(cache_dir: Path, string_ids: bool = False, variant: int = 0) -> TinyCache:
    """Build a tiny cache (8 customers x 5 products, service.testing) at `cache_dir`."""
    frame = tiny_interactions(variant=variant, string_ids=string_ids)
    manifest = build_tiny_cache(cache_dir, frame)
    return TinyCache(cache_dir, frame, manifest, expected_audiences(cache_dir))


@pytest.fixture(scope="session")
def int_cache(tmp_path_factory: pytest.TempPathFactory) -> TinyCache:
    """A read-only tiny cache with integer product ids (shared by every test of the session)."""
    return tiny_cache(tmp_path_factory.mktemp("int_cache"))


@pytest.fixture(scope="session")
def str_cache(tmp_path_factory: pytest.TempPathFactory) -> TinyCache:
    """A read-only tiny cache whose product ids are SKU-like strings."""
    return tiny_cache(tmp_path_factory.mktemp("str_cache"), string_ids=True)


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    """A tiny real cache of this test's own (tests may rebuild or corrupt it)."""
    return tiny_cache(tmp_path / "cache").dir


@pytest.fixture(scope="session")
def make_client() -> Callable[..., TestClient]:
    """Factory: a TestClient over a fresh app for a cache dir, reload polling off unless set (enter it: lifespan)."""

    def make(cache_dir: Path, **settings: Any) -> TestClient:
        cfg = ServiceSettings(cache_dir=cache_dir, **{"reload_interval_s": 0.0, **settings})
        return TestClient(create_app(cfg), raise_server_exceptions=False)

    return make


@pytest.fixture()
def port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    return free_port()


@dataclass
class RunningServer:
    """`python -m service` started by a test (stdout/stderr captured as text)."""

    proc: subprocess.Popen[str]
    port: int
    cache_dir: Path

    @property
    def base(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """SIGTERM the server and its workers; its exit code."""
        return stop_process_tree(self.proc, SERVER_DEADLINE_S)


@pytest.fixture()
def start_service() -> Iterator[Callable[..., RunningServer]]:
    """Factory: `python -m service` over a cache on a free port (RECSYS_* from keywords), stopped after the test."""
    started: list[RunningServer] = []

    def start(cache_dir: Path, *, workers: int = 1, ready: bool = True, **env: str) -> RunningServer:
        port = free_port()
        proc = start_module(
            "service",
            env=service_env(cache_dir, port, workers=workers, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        server = RunningServer(proc, port, cache_dir)
        started.append(server)
        if ready:
            wait_until(
                lambda: http_ok(f"{server.base}/health"),
                "the server to answer /health",
                timeout_s=SERVER_DEADLINE_S,
                proc=proc,
                describe_exit=lambda: proc.stderr.read() if proc.stderr else "",
            )
        return server

    yield start
    for server in started:
        server.stop()
