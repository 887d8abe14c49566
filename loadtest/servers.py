"""The served apps (the service, the trivial app): start on a free port, wait until every worker answers, stop."""

from __future__ import annotations

import contextlib
import json
import subprocess  # nosec B404 # starts the apps under test as child processes
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from loadtest.plan import Plan
from recsys.config import PROJ_ROOT
from service.processes import HOST, free_port, server_workers, service_env, start_module, stop_process_tree
from service.security import hash_key


@dataclass
class Server:
    """One app served by uvicorn in its own process group."""

    name: str
    proc: subprocess.Popen[bytes]
    base: str
    workers: int
    log: Path
    started_at: float
    ready: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = None  # the key its clients send (RECSYS_API_KEYS of this run), None = keys off

    def worker_procs(self) -> list[psutil.Process]:
        """The processes that serve requests (`service.processes.server_workers`)."""
        return server_workers(self.proc.pid, self.workers)


def start_server(name: str, module: str, env: dict[str, str], workers: int, log: Path) -> Server:
    """Start `python -m module` from the project root in a new session (so we can stop its whole group)."""
    port = int(env["RECSYS_PORT"])
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        proc = start_module(module, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return Server(name, proc, f"http://{HOST}:{port}", workers, log, t0)


def health_pid(base: str) -> int | None:
    """The pid that answered one GET /health on a fresh connection, or None when not ready."""
    try:
        r = httpx.get(f"{base}/health", timeout=2.0)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    return int(r.json().get("pid", -1))


def wait_ready(server: Server, timeout_s: float = 300.0) -> dict[str, Any]:
    """Seconds from launch to the first /health 200 and to every worker having answered /health."""
    first: float | None = None
    pids: set[int] = set()
    deadline = time.perf_counter() + timeout_s
    with contextlib.ExitStack() as stack:
        pool = None
        while time.perf_counter() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited with {server.proc.returncode}; log: "
                    f"{server.log.read_text(errors='replace')[-2000:]}"
                )
            if first is None:
                pid = health_pid(server.base)
                if pid is not None:
                    first = time.perf_counter() - server.started_at
                    pids.add(pid)
            else:
                if pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    pool = stack.enter_context(ThreadPoolExecutor(8))
                pids.update(p for p in pool.map(health_pid, [server.base] * 8) if p is not None)
            if first is not None and len(pids) >= server.workers:
                break
            time.sleep(0.02)
    if first is None:
        raise RuntimeError(f"{server.name} not ready after {timeout_s} s; log: {server.log}")
    all_s = time.perf_counter() - server.started_at if len(pids) >= server.workers else None
    return {
        "first_health_ok_s": round(first, 3),
        "all_workers_ready_s": None if all_s is None else round(all_s, 3),
        "worker_pids_seen": sorted(pids),
    }


def stop_server(server: Server, timeout_s: float = 30.0) -> int:
    """SIGTERM the server (uvicorn stops its workers), wait; SIGKILL it and its own descendants if they linger."""
    return stop_process_tree(server.proc, timeout_s)


def serve(
    stack: contextlib.ExitStack,
    name: str,
    module: str,
    cache_dir: Path,
    plan: Plan,
    work: Path,
    api_key: str | None = None,
) -> Server:
    """Start one app on a free port, register its stop, and wait until every worker answers /health.

    With `api_key` the service requires it (RECSYS_API_KEYS, configured as its sha256 form) and the load
    generators send it.
    """
    extra = {"RECSYS_API_KEYS": hash_key(api_key)} if api_key else {}
    env = service_env(
        cache_dir,
        free_port(),
        workers=plan.workers,
        RECSYS_FAST_LANE="true" if plan.fast_lane else "false",
        **extra,
    )
    server = start_server(name, module, env, plan.workers, work / f"{name}.log")
    server.api_key = api_key
    stack.callback(stop_server, server)
    print(f"starting {name} ({plan.workers} workers) at {server.base} ...", flush=True)
    server.ready = wait_ready(server)
    return server


def uvicorn_implementation(env: dict[str, str]) -> dict[str, str]:
    """The event loop and socket layout (`service.workers.serving_layout`) and uvicorn's 'auto' HTTP parser."""
    code = (
        "import importlib.util as u, json; from service.workers import serving_layout; "
        "print(json.dumps({**serving_layout(), 'http': 'httptools' if u.find_spec('httptools') else 'h11'}))"
    )
    out = subprocess.run(  # nosec B603 # argv built here (sys.executable -c constant code), no shell
        [sys.executable, "-c", code], env=env, cwd=PROJ_ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    layout: dict[str, str] = json.loads(out)
    return layout
