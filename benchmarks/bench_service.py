"""Benchmark the HTTP service on the default cache: start-up to ready, memory per worker, in-process latency.

Run from the project root: ``.venv/bin/python benchmarks/bench_service.py`` (builds data/artifacts/cache
with recsys.cache.stage.build_cache_from_params when it is missing or unreadable). Writes
reports/benchmarks/service.json.

What is measured (all on this machine, under whatever else is running: the load average is recorded):

- start-up: wall time from spawning ``python -m service`` until GET /health first answers 200
  (interpreter start, imports, cache pre-flight, uvicorn, lifespan load), repeated ``--startups`` times,
  with the CPU seconds the server process used until then (less sensitive to other load on the box);
- memory: RSS, PSS and USS of a single worker right after start-up and after every product was requested
  at full depth N (every page of the mapped arrays touched: the steady-state upper bound per worker), then
  of each of ``--workers`` workers after start-up and after 2000 random requests. RSS counts the shared
  page-cache pages of the memory-mapped cache in every worker; PSS splits them between the workers and
  USS is what a worker holds privately;
- latency: GET /recommend/{id} handled in-process by calling the ASGI app directly (no sockets), over
  random known products; wall time and the thread's CPU time per request (CPU time is immune to the
  scheduler pausing us for other processes on a busy 2-core box). Also a smaller run through
  httpx.ASGITransport for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess  # nosec B404 # starts the service under test as a child process
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from recsys import config
from service.app import create_app
from service.processes import (
    free_port,
    http_ok,
    server_workers,
    service_env,
    start_module,
    stop_process_tree,
    wait_until,
)
from service.settings import ServiceSettings
from service.state import CacheHolder

TARGETS = {"startup_s": 3.0, "rss_mb_per_worker": 400.0, "p99_ms": 1.0}
OUT_PATH = config.REPORTS_DIR / "benchmarks" / "service.json"
MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------------


def spawn(cache_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """Start `python -m service` on 127.0.0.1:port (polling off: nothing but serving)."""
    env = service_env(cache_dir, port, workers=workers, RECSYS_RELOAD_INTERVAL_S="0")
    return start_module("service", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(proc: subprocess.Popen[bytes], base: str, timeout_s: float = 120.0) -> float:
    """Seconds until GET /health answers 200 (raises if the server dies or never answers)."""
    return wait_until(
        lambda: http_ok(f"{base}/health", timeout_s=1.0),
        "GET /health to answer 200",
        timeout_s=timeout_s,
        proc=proc,
        interval_s=0.01,
        describe_exit=lambda: proc.stderr.read().decode()[-2000:] if proc.stderr else "",
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server we started (and its workers) and wait for it."""
    stop_process_tree(proc, timeout_s=60.0)


def worker_memory(proc: subprocess.Popen[bytes], workers: int) -> list[dict[str, float]]:
    """RSS/PSS/USS (MB) of each worker (`service.processes.server_workers`: the server itself when workers == 1)."""
    out = []
    for p in server_workers(proc.pid, workers):
        info = p.memory_full_info()
        out.append(
            {
                "pid": p.pid,
                "rss_mb": round(info.rss / MB, 1),
                "pss_mb": round(info.pss / MB, 1),
                "uss_mb": round(info.uss / MB, 1),
            }
        )
    return out


def touch_everything(base: str, product_ids: list[Any], n: int) -> int:
    """Request every product at full depth in batches of 1000 (every mapped page is read at least once)."""
    with httpx.Client(base_url=base, timeout=300) as http:
        for start in range(0, len(product_ids), 1000):
            r = http.post("/recommend/batch", json={"product_ids": product_ids[start : start + 1000], "n": n})
            r.raise_for_status()
    return len(product_ids)


def random_load(base: str, product_ids: list[Any], requests: int, seed: int) -> None:
    """`requests` GET /recommend calls on fresh connections (so the kernel spreads them over the workers)."""
    rng = np.random.default_rng(seed)
    for pid in rng.choice(np.asarray(product_ids, dtype=object), size=requests).tolist():
        httpx.get(f"{base}/recommend/{pid}", timeout=30).raise_for_status()


def measure_startup(cache_dir: Path, repeats: int) -> dict[str, Any]:
    """Start-up-to-ready wall times of a single-worker server and the CPU seconds it used to get there."""
    wall, cpu = [], []
    for _ in range(repeats):
        port = free_port()
        proc = spawn(cache_dir, port, 1)
        try:
            wall.append(round(wait_ready(proc, f"http://127.0.0.1:{port}"), 3))
            times = psutil.Process(proc.pid).cpu_times()
            cpu.append(round(times.user + times.system, 3))
        finally:
            stop(proc)
    return {"times_s": wall, "median_s": float(np.median(wall)), "cpu_s": cpu}


def wait_workers(proc: subprocess.Popen[bytes], workers: int, timeout_s: float = 60.0) -> None:
    """Wait until `workers` worker processes exist, plus a moment for each to finish its lifespan."""
    end = time.monotonic() + timeout_s
    while workers > 1 and len(worker_memory(proc, workers)) < workers and time.monotonic() < end:
        time.sleep(0.1)
    time.sleep(1.0)


def measure_memory(cache_dir: Path, workers: int, product_ids: list[Any], n: int, seed: int) -> dict[str, Any]:
    """Worst case for one worker (every product read at depth N) and a shared multi-worker picture."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = spawn(cache_dir, port, 1)
    try:
        wait_ready(proc, base)
        idle = worker_memory(proc, 1)
        t0 = time.perf_counter()
        touched = touch_everything(base, product_ids, n)
        touch_s = time.perf_counter() - t0
        full = worker_memory(proc, 1)
    finally:
        stop(proc)
    single = {
        "after_startup": idle,
        "after_every_product_at_depth_n": full,
        "products": touched,
        "touch_all_s": round(touch_s, 1),
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = spawn(cache_dir, port, workers)
    try:
        ready_s = wait_ready(proc, base)
        wait_workers(proc, workers)
        idle = worker_memory(proc, workers)
        random_load(base, product_ids, 2000, seed)
        loaded = worker_memory(proc, workers)
    finally:
        stop(proc)
    multi = {
        "workers": workers,
        "ready_s": round(ready_s, 3),
        "after_startup": idle,
        "after_2000_random_requests": loaded,
    }
    return {"single_worker": single, "multi_worker": multi}


# ---------------------------------------------------------------------------------------------------
# in-process latency
# ---------------------------------------------------------------------------------------------------


def make_scope(path: str, query: bytes) -> dict[str, Any]:
    """A minimal ASGI HTTP scope for GET `path`?`query`."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def call_asgi(app: Any, path: str, query: bytes) -> tuple[int, bytes]:
    """Run one request through the ASGI app; (status, body)."""
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(make_scope(path, query), receive, send)
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


def percentiles(values_ns: list[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in milliseconds."""
    a = np.asarray(values_ns, dtype=np.float64) / 1e6
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p90_ms": round(float(np.percentile(a, 90)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "p99_9_ms": round(float(np.percentile(a, 99.9)), 4),
        "max_ms": round(float(a.max()), 4),
        "mean_ms": round(float(a.mean()), 4),
    }


async def asgi_latency(app: Any, paths: list[str], query: bytes, warmup: int) -> dict[str, Any]:
    """Per-request wall and CPU time of direct ASGI calls."""
    for path in paths[:warmup]:
        await call_asgi(app, path, query)
    wall, cpu = [], []
    me = psutil.Process()
    switches0 = me.num_ctx_switches().involuntary
    for path in paths:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        status, _ = await call_asgi(app, path, query)
        cpu.append(time.thread_time_ns() - c0)
        wall.append(time.perf_counter_ns() - t0)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    preempted = me.num_ctx_switches().involuntary - switches0
    return {
        "requests": len(paths),
        "wall": percentiles(wall),
        "cpu": percentiles(cpu),
        "involuntary_context_switches": preempted,
        "share_of_requests_over_1ms_wall": round(float(np.mean(np.asarray(wall) > 1_000_000)), 4),
    }


async def httpx_latency(app: Any, paths: list[str], query: str) -> dict[str, Any]:
    """Per-request wall time through httpx.ASGITransport (adds httpx's own request/response handling)."""
    wall = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        for path in paths[:500]:
            await client.get(f"{path}?{query}")
        for path in paths:
            t0 = time.perf_counter_ns()
            r = await client.get(f"{path}?{query}")
            wall.append(time.perf_counter_ns() - t0)
            r.raise_for_status()
    return {"requests": len(paths), "wall": percentiles(wall)}


def measure_latency(cache_dir: Path, requests: int, warmup: int, seed: int, rounds: int) -> dict[str, Any]:
    """In-process latency of /recommend for random known products: `rounds` rounds at n=10, one at n=N."""
    holder = CacheHolder(cache_dir)
    holder.load()
    app = create_app(ServiceSettings(cache_dir=cache_dir, reload_interval_s=0), holder=holder)
    ids = np.asarray(holder.snapshot.lookup.product_ids())
    rng = np.random.default_rng(seed)
    paths = [f"/recommend/{pid}" for pid in ids[rng.integers(0, len(ids), requests + warmup)].tolist()]
    n_max = holder.snapshot.n
    gc.collect()
    gc.freeze()  # what the lifespan does after loading

    async def run_all() -> dict[str, Any]:
        n10 = [await asgi_latency(app, paths, b"n=10", warmup) for _ in range(rounds)]
        return {
            "n10_rounds": n10,
            "n10_median_round_p99_wall_ms": float(np.median([r["wall"]["p99_ms"] for r in n10])),
            "n10_median_round_p99_cpu_ms": float(np.median([r["cpu"]["p99_ms"] for r in n10])),
            f"n{n_max}": await asgi_latency(app, paths[: requests // 2 + warmup], f"n={n_max}".encode(), warmup),
            "n10_via_httpx_asgi_transport": await httpx_latency(app, paths[: min(5000, requests)], "n=10"),
        }

    return asyncio.run(run_all())


# ---------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=config.CACHE_DIR)
    ap.add_argument("--requests", type=int, default=20000, help="timed in-process requests (n=10)")
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the n=10 latency loop")
    ap.add_argument("--startups", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT_PATH)
    return ap.parse_args(argv)


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    """Each target next to the measured figure it is judged on."""
    startup = result["startup"]["median_s"]
    rss = max(w["rss_mb"] for w in result["memory"]["single_worker"]["after_every_product_at_depth_n"])
    lat = result["latency"]
    wall, cpu = lat["n10_median_round_p99_wall_ms"], lat["n10_median_round_p99_cpu_ms"]
    return {
        "startup_s": {
            "target": TARGETS["startup_s"],
            "measured_median": startup,
            "measured_worst": max(result["startup"]["times_s"]),
            "ok": startup <= TARGETS["startup_s"],
        },
        "rss_mb_per_worker": {
            "target": TARGETS["rss_mb_per_worker"],
            "measured_worst": rss,
            "ok": rss <= TARGETS["rss_mb_per_worker"],
        },
        "p99_ms": {
            "target": TARGETS["p99_ms"],
            "measured_wall_median_round": wall,
            "measured_cpu_median_round": cpu,
            "ok_wall": wall <= TARGETS["p99_ms"],
            "ok_cpu": cpu <= TARGETS["p99_ms"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run every measurement, write the JSON report and print it."""
    from recsys.cache.build import cache_facts
    from recsys.cache.stage import open_or_build

    args = parse_args(argv)
    cache_dir = config.resolve(args.cache_dir)
    result: dict[str, Any] = {"build": open_or_build(cache_dir)}
    result["cache"] = cache_facts(cache_dir)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    print("latency ...", flush=True)  # first: nothing else of ours is running or being torn down
    result["latency"] = measure_latency(cache_dir, args.requests, args.warmup, args.seed, args.rounds)
    print("start-up ...", flush=True)
    result["startup"] = measure_startup(cache_dir, args.startups)
    print("memory ...", flush=True)
    product_ids = np.asarray(CacheHolder(cache_dir).load().lookup.product_ids()).tolist()
    result["memory"] = measure_memory(cache_dir, args.workers, product_ids, int(result["cache"]["n"]), args.seed)
    result["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = verdicts(result)
    out = config.resolve(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
