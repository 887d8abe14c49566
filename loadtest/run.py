"""Load-test the audience service and write the performance report to reports/loadtest/.

One command from the project root: ``.venv/bin/python -m loadtest.run --soak 300``. It

1. waits (bounded) for a quiet machine, opens the full default cache (builds it if missing);
2. starts ``python -m service`` on 127.0.0.1 (free port, RECSYS_WORKERS = --workers) and measures
   start-up to /health ready and RSS/PSS/USS per uvicorn worker;
3. runs locust headless (loadtest/locustfile.py: 1,000 FastHttpUsers, 50/s, 60 s) and, with --soak,
   a second long locust run that samples the workers' RSS every few seconds;
4. runs ``wrk -t1 -c100 -d30s`` and ``-c1000`` against /recommend with random known products
   (loadtest/wrk_random.lua), then the same against a trivial FastAPI app served the same way
   (loadtest/trivial_app.py: the framework ceiling of this machine);
5. stops everything it started (also on Ctrl-C or an error) and writes locust CSVs, summary.json,
   summary.md (generated from summary.json) and PNG charts.

Every run is bounded in time and sends load to 127.0.0.1 only. ``--tiny`` runs the whole pipeline in
seconds against a tiny cache built in a temporary directory (used by tests/test_loadtest.py).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python loadtest/run.py` as well as `python -m loadtest.run`
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from recsys import config  # noqa: E402

LOADTEST_DIR = Path(__file__).resolve().parent
LOCUSTFILE = LOADTEST_DIR / "locustfile.py"
WRK_SCRIPT = LOADTEST_DIR / "wrk_random.lua"
OUT_DIR = config.REPORTS_DIR / "loadtest"
MB = 1024 * 1024
HOST = "127.0.0.1"

# The original service, measured on a machine like ours (2 cores, ~200K products, 2 uvicorn workers,
# load generator on the same machine). Figures as reported in issue #8.
ORIGINAL: dict[str, Any] = {
    "startup_s": 248.0,
    "rss_mb_per_worker": 2500.0,
    "wrk_c100": {"rps": 13424.0, "p50_ms": 9.3, "p99_ms": 40.5, "timeouts": None},
    "wrk_c1000": {"rps": 11641.0, "p50_ms": 79.0, "p99_ms": 189.0, "timeouts": 107},
    "locust": {"users": 1000, "rps": 2146.0, "p50_ms": 240.0, "p99_ms": 380.0, "failures": 0,
               "note": "HttpUser; locust at 100% CPU"},
}
TARGETS: dict[str, Any] = {
    "wrk_c100": {"rps_min": round(1.2 * 13424.0, 1), "p99_ms_max": 30.0},
    "wrk_c1000": {"rps_min": round(1.2 * 11641.0, 1), "p99_ms_max": 150.0, "timeouts_max": 0},
    "ratio_to_trivial_min": 0.7,
    "locust": {"failures_max": 0, "p99_ms_max": 250.0, "duration_s_min": 60.0},
    "startup_s_max": 3.0,
    "rss_mb_per_worker_max": 300.0,
    "soak_rss_growth_mb_max": 5.0,
}
OUTPUT_PATTERNS = ("locust_*.csv", "soak_*.csv", "summary.json", "summary.md", "*.png")


# ---------------------------------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Everything one run does, after --tiny defaults are applied."""

    workers: int
    users: int
    spawn_rate: float
    duration_s: int
    wrk_duration_s: int
    wrk_connections: tuple[int, ...]
    skip_wrk: bool
    soak_s: int
    tiny: bool
    locust_processes: int
    wait: str
    out: Path
    cache_dir: Path | None
    max_load_wait_s: float
    phase_wait_s: float
    busy_threshold: float
    fast_lane: bool = True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers (RECSYS_WORKERS), default 2")
    ap.add_argument("--no-fast-lane", action="store_true",
                    help="serve every request through FastAPI routing (RECSYS_FAST_LANE=false), for comparison")
    ap.add_argument("--users", type=int, default=None, help="locust users (default 1000; tiny 10)")
    ap.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default 50)")
    ap.add_argument("--duration", type=int, default=None, help="locust run time in s (default 60; 0 = skip)")
    ap.add_argument("--wrk-duration", type=int, default=None, help="each wrk run in s (default 30)")
    ap.add_argument("--skip-wrk", action="store_true", help="no wrk runs (service nor trivial app)")
    ap.add_argument("--soak", type=int, default=0, metavar="SECONDS",
                    help="extra locust soak run of this length with RSS sampling (5 minutes = --soak 300)")
    ap.add_argument("--tiny", action="store_true", help="seconds-long smoke run on a tiny cache in a temp dir")
    ap.add_argument("--locust-processes", type=int, default=None,
                    help="locust --processes (default 2: one process saturates a core and then measures itself; "
                    "tiny 1 = no fork)")
    ap.add_argument("--wait", default=None, help='user think time "min,max" s (default "0.1,0.3")')
    ap.add_argument("--out", type=Path, default=None, help=f"output directory (default {OUT_DIR})")
    ap.add_argument("--cache-dir", type=Path, default=None, help="cache to serve (default data/artifacts/cache)")
    ap.add_argument("--max-load-wait", type=float, default=None,
                    help="seconds to wait for other jobs to leave the CPU before starting (default 300; tiny 0)")
    ap.add_argument("--phase-wait", type=float, default=None,
                    help="seconds each locust/wrk phase may wait for other jobs to leave the CPU (default 120; tiny 0)")
    ap.add_argument("--busy-threshold", type=float, default=15.0,
                    help="machine CPU %% (all cores = 100) used by others below which the machine counts as quiet")
    return ap.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """Resolve defaults: the issue's scenario normally, a seconds-long one with --tiny."""
    tiny = bool(args.tiny)

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if tiny else full)

    return Plan(
        workers=args.workers,
        users=pick(args.users, 1000, 10),
        spawn_rate=pick(args.spawn_rate, 50.0, 10.0),
        duration_s=pick(args.duration, 60, 4),
        wrk_duration_s=pick(args.wrk_duration, 30, 1),
        wrk_connections=(10, 50) if tiny else (100, 1000),
        skip_wrk=bool(args.skip_wrk),
        soak_s=int(args.soak),
        tiny=tiny,
        locust_processes=pick(args.locust_processes, 2, 1),
        wait=pick(args.wait, "0.1,0.3", "0.05,0.1"),
        out=config.resolve(args.out) if args.out else OUT_DIR,
        cache_dir=config.resolve(args.cache_dir) if args.cache_dir else None,
        max_load_wait_s=pick(args.max_load_wait, 300.0, 0.0),
        phase_wait_s=pick(args.phase_wait, 120.0, 0.0),
        busy_threshold=args.busy_threshold,
        fast_lane=not args.no_fast_lane,
    )


# ---------------------------------------------------------------------------------------------------
# machine, cache and fixture
# ---------------------------------------------------------------------------------------------------


def loadavg() -> list[float]:
    """1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_quiet(max_wait_s: float, busy_pct: float) -> dict[str, Any]:
    """Wait (at most `max_wait_s`) until other processes use <= busy_pct % of the machine over 5 s; report it."""
    before = loadavg()
    t0 = time.monotonic()
    busy = psutil.cpu_percent(interval=1.0 if max_wait_s <= 0 else 5.0)
    if busy > busy_pct and max_wait_s > 0:
        print(f"  machine CPU {busy} % (others): waiting up to {max_wait_s:.0f} s for it to drop below {busy_pct} %",
              flush=True)
    while busy > busy_pct and time.monotonic() - t0 < max_wait_s:
        busy = psutil.cpu_percent(interval=5.0)
    return {"loadavg_before_wait": before, "waited_s": round(time.monotonic() - t0, 1), "loadavg_at_start": loadavg(),
            "machine_cpu_pct_at_start": busy, "busy_threshold_pct": busy_pct, "quiet": busy <= busy_pct}


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def uvicorn_implementation(env: dict[str, str]) -> dict[str, str]:
    """The event loop (`service.loop`) and uvicorn's 'auto' HTTP parser of a server started with `env`."""
    code = ("import importlib.util as u; from service.loop import loop_name, per_worker_listeners; "
            "print(repr((loop_name(), bool(u.find_spec('httptools')), per_worker_listeners())))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    loop, httptools, reuse_port = ast.literal_eval(out.strip())
    return {"loop": loop, "http": "httptools" if httptools else "h11",
            "listeners": "one SO_REUSEPORT socket per worker" if reuse_port else "one shared socket"}


def tiny_cache(work: Path) -> tuple[Path, Path]:
    """A tiny real cache (8 customers x 5 products, N=100) plus its interactions Parquet, under `work`."""
    from service.testing import build_tiny_cache, tiny_interactions

    frame = tiny_interactions()
    prepared = work / "interactions.parquet"
    frame.to_parquet(prepared)
    build_tiny_cache(work / "cache", frame, n=100)
    return work / "cache", prepared


def unknown_product_ids(ids: np.ndarray, count: int, rng: np.random.Generator) -> list[Any]:
    """`count` ids of the cache's kind that the cache does not contain (they must come back cold_start)."""
    if ids.dtype.kind in "iu":
        top = int(ids.max()) if len(ids) else 0
        return (top + 1 + rng.choice(10**6, size=count, replace=False)).tolist()
    known = set(ids.tolist())
    out = [f"unknown-{rng.integers(0, 2**62):x}" for _ in range(count)]
    return [u for u in out if u not in known]


def source_mismatch(manifest: dict[str, Any], prepared: Path) -> str | None:
    """Why `prepared` is not the data the cache was fitted on (exclusion would not hold), or None."""
    from recsys.cache.build import fingerprint_file, fingerprint_frame
    from recsys.data.contract import load_prepared

    fp = manifest.get("fingerprint") or {}
    if fp.get("algorithm") == "sha256-file":
        same = fingerprint_file(prepared) == fp.get("value")
    elif fp.get("algorithm") == "sha256-rows":
        same = fingerprint_frame(load_prepared(prepared)) == fp.get("value")
    else:
        return f"cache manifest has no usable fingerprint ({fp.get('algorithm')!r})"
    return None if same else f"{prepared} is not the data this cache was built from (fingerprint differs)"


def exclusion_sample(prepared: Path, manifest: dict[str, Any], pool: list[Any], spot: int,
                     rng: np.random.Generator) -> tuple[dict[str, list[Any]], str | None]:
    """Customers who interacted with each of `spot` products (half the most-interacted, half random from `pool`)."""
    import pandas as pd

    if not prepared.is_file():
        return {}, f"{prepared} not found: exclusion spot-check skipped (run the prepare stage first)"
    mismatch = source_mismatch(manifest, prepared)
    if mismatch:
        return {}, f"exclusion spot-check skipped: {mismatch}"
    table = pd.read_parquet(prepared, columns=["product_id", "customer_id"])
    counts = table["product_id"].value_counts()
    popular = counts.index[: spot // 2].tolist()
    taken = set(popular)
    rest = [p for p in pool if p not in taken]
    chosen = popular + [rest[i] for i in rng.choice(len(rest), size=min(spot - len(popular), len(rest)),
                                                    replace=False)]
    chosen_set = set(chosen)
    picked = table[table["product_id"].isin(chosen_set)]
    grouped = picked.groupby("product_id", observed=True)["customer_id"].unique()
    return {str(pid): sorted(np.asarray(cs).tolist()) for pid, cs in grouped.items()}, None


def build_fixture(cache_dir: Path | None = None, prepared: Path | None = None, *, sample: int = 10_000,
                  spot: int = 100, seed: int = 0) -> dict[str, Any]:
    """Ids, audience sizes, unknown ids and an exclusion sample for the locust users (JSON-ready)."""
    from recsys.cache.lookup import AudienceLookup

    lookup = AudienceLookup.open(cache_dir or config.CACHE_DIR)
    ids = np.asarray(lookup.product_ids())
    rng = np.random.default_rng(seed)
    known = ids[np.sort(rng.choice(len(ids), size=min(sample, len(ids)), replace=False))].tolist()
    unknown = unknown_product_ids(ids, 100, rng)
    exclusion, skipped = exclusion_sample(prepared or config.PREPARED_PARQUET, lookup.manifest, known, spot, rng)
    exclusion = {k: v for k, v in exclusion.items() if lookup.known(int(k) if lookup.id_kind == "int" else k)}
    available: dict[str, list[Any]] = {}
    for pid in [*known, *(int(k) if lookup.id_kind == "int" else k for k in exclusion)]:
        customers, _, cold = lookup.top(pid, lookup.n)
        available[str(pid)] = [int(len(customers)), bool(cold)]
    return {"known_ids": known, "available": available, "unknown_ids": unknown,
            "fallback_size": int(len(lookup.top(unknown[0], lookup.n)[0])), "n_max": int(lookup.n),
            "exclusion": exclusion, "exclusion_skipped": skipped, "seed": seed}


# ---------------------------------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_env(cache_dir: Path, port: int, workers: int, fast_lane: bool = True) -> dict[str, str]:
    """Environment of a served app: this process's variables, RECSYS_* replaced by ours (127.0.0.1 only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_") or k == "RECSYS_ROOT"}
    env.update({"RECSYS_CACHE_DIR": str(cache_dir), "RECSYS_HOST": HOST, "RECSYS_PORT": str(port),
                "RECSYS_WORKERS": str(workers), "RECSYS_LOG_LEVEL": "warning",
                "RECSYS_FAST_LANE": "true" if fast_lane else "false"})
    return env


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

    def worker_procs(self) -> list[psutil.Process]:
        """The processes that serve requests (uvicorn's spawned workers, or the server itself with 1 worker)."""
        try:
            parent = psutil.Process(self.proc.pid)
            if self.workers == 1:
                return [parent]
            return [c for c in parent.children() if "resource_tracker" not in " ".join(c.cmdline())]
        except psutil.Error:
            return []

    def all_procs(self) -> list[psutil.Process]:
        """The server process and all its descendants."""
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.Error:
            return []


def start_server(name: str, module: str, env: dict[str, str], workers: int, log: Path) -> Server:
    """Start `python -m module` from the project root in a new session (so we can stop its whole group)."""
    port = int(env["RECSYS_PORT"])
    fh = log.open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)
    fh.close()
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
                raise RuntimeError(f"{server.name} exited with {server.proc.returncode}; log: "
                                   f"{server.log.read_text(errors='replace')[-2000:]}")
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
    return {"first_health_ok_s": round(first, 3), "all_workers_ready_s": None if all_s is None else round(all_s, 3),
            "worker_pids_seen": sorted(pids)}


def stop_server(server: Server, timeout_s: float = 30.0) -> int | None:
    """SIGTERM the server (uvicorn stops its workers), wait; SIGKILL it and its own descendants if they linger."""
    if server.proc.poll() is not None:
        return server.proc.returncode
    family = server.all_procs()
    with contextlib.suppress(ProcessLookupError):
        server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)
    for p in family[1:]:  # psutil.Process objects check create_time, so a recycled pid is never hit
        with contextlib.suppress(psutil.Error):
            p.kill()
    return server.proc.returncode


def worker_memory(procs: list[psutil.Process]) -> list[dict[str, Any]]:
    """RSS (anonymous / file-backed split), PSS and USS in MB for each process."""
    out = []
    for p in procs:
        try:
            info = p.memory_full_info()
            status = Path(f"/proc/{p.pid}/status").read_text()
        except (psutil.Error, OSError):
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

        def kb(name: str) -> float:
            return round(int(fields.get(name, "0 kB").split()[0]) / 1024, 1)

        out.append({"pid": p.pid, "rss_mb": round(info.rss / MB, 1), "rss_anon_mb": kb("RssAnon"),
                    "rss_file_mb": kb("RssFile"), "pss_mb": round(info.pss / MB, 1),
                    "uss_mb": round(info.uss / MB, 1)})
    return out


# ---------------------------------------------------------------------------------------------------
# sampling CPU and memory while load runs
# ---------------------------------------------------------------------------------------------------


def cpu_total(times: Any) -> float:
    """All CPU time in a psutil cpu_times() tuple (guest time is already inside user/nice on Linux)."""
    return float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


class Sampler(threading.Thread):
    """Every `interval` s: CPU % of each process group, machine CPU %, and (optionally) worker memory."""

    def __init__(self, groups: dict[str, Callable[[], list[psutil.Process]]], interval: float,
                 memory_of: Callable[[], list[psutil.Process]] | None = None) -> None:
        """Remember what to sample; call start() and later stop()."""
        super().__init__(daemon=True)
        self.groups = groups
        self.interval = interval
        self.memory_of = memory_of
        self.samples: list[dict[str, Any]] = []
        self._known: dict[int, psutil.Process] = {}
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    def _cpu(self, procs: list[psutil.Process]) -> dict[int, float]:
        """CPU % of each of `procs` since the previous sample (processes are cached so deltas are real)."""
        out: dict[int, float] = {}
        for p in procs:
            cached = self._known.setdefault(p.pid, p)
            try:
                out[p.pid] = round(cached.cpu_percent(None), 1)
            except psutil.Error:
                pass
        return out

    def _machine(self) -> float:
        """Busy % of all cores since the previous sample, from /proc/stat deltas (no shared psutil state)."""
        now = psutil.cpu_times()
        last, self._last_times = self._last_times, now
        total = cpu_total(now) - cpu_total(last)
        idle = (now.idle + now.iowait) - (last.idle + last.iowait)
        return round(100.0 * (total - idle) / total, 1) if total > 0 else 0.0

    def run(self) -> None:
        """Sample until stopped."""
        self._last_times = psutil.cpu_times()
        for fn in self.groups.values():
            self._cpu(fn())
        while not self._halt.wait(self.interval):
            per_pid = {name: self._cpu(fn()) for name, fn in self.groups.items()}
            sample: dict[str, Any] = {"t": round(time.monotonic() - self._t0, 2), "machine_cpu": self._machine(),
                                      "cpu": {name: round(sum(v.values()), 1) for name, v in per_pid.items()},
                                      "cpu_per_pid": per_pid, "loadavg_1m": round(os.getloadavg()[0], 2)}
            if self.memory_of is not None:
                sample["memory"] = worker_memory(self.memory_of())
            self.samples.append(sample)

    def stop(self) -> list[dict[str, Any]]:
        """Stop sampling and return the samples."""
        self._halt.set()
        self.join(timeout=30)
        return self.samples


@contextlib.contextmanager
def sampling(groups: dict[str, Callable[[], list[psutil.Process]]], interval: float,
             memory_of: Callable[[], list[psutil.Process]] | None = None) -> Iterator[Sampler]:
    """A running Sampler for the duration of the block."""
    sampler = Sampler(groups, interval, memory_of)
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


def cpu_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and max CPU % per group and of everything else (100 % = one core), machine mean (100 % = all cores)."""
    if not samples:
        return {}
    out: dict[str, Any] = {}
    for name in samples[0]["cpu"]:
        values = [s["cpu"][name] for s in samples]
        out[f"{name}_mean_pct"] = round(float(np.mean(values)), 1)
        out[f"{name}_max_pct"] = round(float(np.max(values)), 1)
    workers = sorted({pid for s in samples for pid in s["cpu_per_pid"].get("service", {})})
    out["service_per_worker_mean_pct"] = [
        round(float(np.mean([s["cpu_per_pid"]["service"].get(pid, 0.0) for s in samples])), 1) for pid in workers]
    machine = [s["machine_cpu"] for s in samples]
    out["machine_mean_pct"] = round(float(np.mean(machine)), 1)
    ours = sum(out[f"{name}_mean_pct"] for name in samples[0]["cpu"])
    out["rest_of_machine_mean_pct"] = round(out["machine_mean_pct"] * (os.cpu_count() or 1) - ours, 1)
    out["loadavg_1m_max"] = max(s["loadavg_1m"] for s in samples)
    return out


def proc_tree(pid_fn: Callable[[], int | None]) -> Callable[[], list[psutil.Process]]:
    """A group function: the process `pid_fn()` names and all its descendants (empty when gone)."""

    def procs() -> list[psutil.Process]:
        pid = pid_fn()
        if pid is None:
            return []
        try:
            parent = psutil.Process(pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.Error:
            return []

    return procs


# ---------------------------------------------------------------------------------------------------
# locust
# ---------------------------------------------------------------------------------------------------


def run_bounded(cmd: list[str], env: dict[str, str], timeout_s: float, log: Path,
                on_start: Callable[[int], None] | None = None) -> int:
    """Run `cmd` in its own session with output to `log`; kill its process group if it overruns."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        if on_start is not None:
            on_start(proc.pid)
        try:
            return proc.wait(timeout=timeout_s)
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            raise


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a CSV file as dicts (empty when the file is missing)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def num(value: str | None) -> float | None:
    """A locust CSV cell as a float (None for N/A or empty)."""
    try:
        return float(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None


def steady_rps(history: list[dict[str, str]], users: int) -> float | None:
    """Requests/s once every user is running: total-count delta over time between the first full row and the last."""
    rows = [r for r in history if r.get("Name") == "Aggregated" and int(num(r.get("User Count")) or 0) >= users]
    if len(rows) < 2:
        return None
    t0, t1 = float(rows[0]["Timestamp"]), float(rows[-1]["Timestamp"])
    c0, c1 = num(rows[0]["Total Request Count"]) or 0, num(rows[-1]["Total Request Count"]) or 0
    return round((c1 - c0) / (t1 - t0), 1) if t1 > t0 else None


def locust_result(prefix: Path, users: int) -> dict[str, Any]:
    """Aggregated figures, per-endpoint counts and failure reasons from locust's CSV files."""
    stats = read_csv_rows(Path(f"{prefix}_stats.csv"))
    agg = next((r for r in stats if r.get("Name") == "Aggregated"), None)
    if agg is None:
        raise RuntimeError(f"locust wrote no aggregated stats to {prefix}_stats.csv")
    history = read_csv_rows(Path(f"{prefix}_stats_history.csv"))
    failures = read_csv_rows(Path(f"{prefix}_failures.csv"))
    endpoints = {r["Name"]: {"requests": int(num(r["Request Count"]) or 0), "failures": int(num(r["Failure Count"]) or 0),
                             "p50_ms": num(r["50%"]), "p99_ms": num(r["99%"])}
                 for r in stats if r.get("Name") != "Aggregated"}
    return {
        "requests": int(num(agg["Request Count"]) or 0),
        "failures": int(num(agg["Failure Count"]) or 0),
        "rps": round(num(agg["Requests/s"]) or 0.0, 1),
        "rps_steady": steady_rps(history, users),
        "latency_ms": {"p50": num(agg["50%"]), "p90": num(agg["90%"]), "p99": num(agg["99%"]),
                       "max": num(agg["100%"]), "mean": round(num(agg["Average Response Time"]) or 0.0, 1)},
        "endpoints": endpoints,
        "failure_reasons": [{"name": r.get("Name"), "error": r.get("Error"), "occurrences": r.get("Occurrences")}
                            for r in failures[:10]],
    }


def run_locust(server: Server, fixture: Path, plan: Plan, duration_s: int, prefix: Path, work: Path,
               memory_interval: float | None = None) -> dict[str, Any]:
    """Run locust headless against `server` for `duration_s`, sampling CPU (and memory); return its figures."""
    env = dict(os.environ, LOADTEST_FIXTURE=str(fixture), LOADTEST_WAIT=plan.wait)
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(plan.users),
           "-r", str(plan.spawn_rate), "-t", f"{duration_s}s", "--host", server.base, "--csv", str(prefix),
           "--only-summary", "--stop-timeout", "5", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    if plan.locust_processes > 1:
        cmd += ["--processes", str(plan.locust_processes)]
    before = wait_for_quiet(plan.phase_wait_s, plan.busy_threshold)
    pid: dict[str, int] = {}
    interval = memory_interval or 1.0
    groups = {"locust": proc_tree(lambda: pid.get("locust")), "service": server.worker_procs}
    load0 = loadavg()
    with sampling(groups, interval, server.worker_procs if memory_interval else None) as sampler:
        code = run_bounded(cmd, env, duration_s + plan.users / plan.spawn_rate + 120, work / f"{prefix.name}.log",
                           on_start=lambda p: pid.update(locust=p))
    if code != 0:
        raise RuntimeError(f"locust exited with {code}; see {work / (prefix.name + '.log')}")
    result = {"tool": "locust", "user_class": "FastHttpUser", "users": plan.users, "spawn_rate": plan.spawn_rate,
              "duration_s": duration_s, "think_time_s": plan.wait, "processes": plan.locust_processes,
              **locust_result(prefix, plan.users), "cpu": cpu_summary(sampler.samples),
              "loadavg_before": load0, "loadavg_after": loadavg(), "machine_before": before}
    if memory_interval:
        result["memory_samples"] = [{"t": s["t"], "memory": s["memory"]} for s in sampler.samples]
    return result


# ---------------------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------------------


def ensure_wrk() -> tuple[str | None, str]:
    """Path of wrk, installing it with scripts/ensure_deb.sh when missing; else None with the reason."""
    found = shutil.which("wrk")
    if found:
        return found, "found"
    print("installing wrk (scripts/ensure_deb.sh) ...", flush=True)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "ensure_deb.sh"), "wrk", "wrk"], check=False, timeout=600,
                          capture_output=True, text=True)
    found = shutil.which("wrk")
    if found:
        return found, "installed with apt-get"
    return None, f"wrk is not installed and could not be: {(proc.stderr or proc.stdout).strip()[-300:]}"


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The JSON summary line that loadtest/wrk_random.lua prints in done()."""
    for line in stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line.removeprefix("WRK_JSON "))
    raise RuntimeError(f"wrk printed no WRK_JSON summary:\n{stdout[-2000:]}")


def run_wrk(wrk: str, server: Server, ids_file: Path, connections: int, duration_s: int, work: Path,
            threads: int = 1) -> dict[str, Any]:
    """`wrk -t1 -cC -dDs` with random known product ids against `server`; its figures plus CPU use."""
    log = work / f"wrk_{server.name}_c{connections}.log"
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "-s", str(WRK_SCRIPT), server.base, "--",
           str(ids_file)]
    pid: dict[str, int] = {}
    load0 = loadavg()
    with sampling({"wrk": proc_tree(lambda: pid.get("wrk")), "service": server.worker_procs}, 1.0) as sampler:
        code = run_bounded(cmd, dict(os.environ), duration_s + 60, log, on_start=lambda p: pid.update(wrk=p))
    text = log.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"wrk exited with {code}:\n{text[-2000:]}")
    raw = parse_wrk(text)
    lat = raw["latency_ms"]
    return {"tool": "wrk", "app": server.name, "threads": threads, "connections": connections,
            "duration_s": round(raw["duration_s"], 2), "requests": raw["requests"], "rps": round(raw["rps"], 1),
            "latency_ms": {k: round(lat[k], 2) for k in ("p50", "p90", "p99", "p999", "max", "mean")},
            "timeouts": raw["errors"]["timeout"], "errors": raw["errors"], "socket_timeout_s": 2,
            "cpu": cpu_summary(sampler.samples), "loadavg_before": load0, "loadavg_after": loadavg()}


def wrk_series(wrk: str, server: Server, ids_file: Path, plan: Plan, work: Path) -> dict[str, Any]:
    """A short warm-up, then one wrk run per planned concurrency."""
    run_wrk(wrk, server, ids_file, plan.wrk_connections[0], min(3, plan.wrk_duration_s), work)
    out = {}
    for c in plan.wrk_connections:
        time.sleep(2.0)  # let the previous run's connections close
        before = wait_for_quiet(plan.phase_wait_s, plan.busy_threshold)
        print(f"  wrk {server.name} -c{c} -d{plan.wrk_duration_s}s ...", flush=True)
        out[f"c{c}"] = {**run_wrk(wrk, server, ids_file, c, plan.wrk_duration_s, work), "machine_before": before}
    return out


# ---------------------------------------------------------------------------------------------------
# analysis, verdicts, report
# ---------------------------------------------------------------------------------------------------


def memory_growth(samples: list[dict[str, Any]], skip_s: float) -> dict[str, Any]:
    """Per worker: RSS (and anonymous RSS) change from the first to the last fifth of the samples after `skip_s`."""
    kept = [s for s in samples if s["t"] >= skip_s and s.get("memory")]
    if len(kept) < 5:
        return {"error": f"only {len(kept)} memory samples after {skip_s} s"}
    k = max(1, len(kept) // 5)
    pids = sorted({m["pid"] for s in kept for m in s["memory"]})
    per_worker = []
    for pid in pids:
        def series(key: str, rows: list[dict[str, Any]], pid: int = pid) -> list[float]:
            return [m[key] for s in rows for m in s["memory"] if m["pid"] == pid]

        rss_first, rss_last = np.median(series("rss_mb", kept[:k])), np.median(series("rss_mb", kept[-k:]))
        anon_first, anon_last = np.median(series("rss_anon_mb", kept[:k])), np.median(series("rss_anon_mb", kept[-k:]))
        ts = [s["t"] for s in kept for m in s["memory"] if m["pid"] == pid]
        slope = np.polyfit(np.asarray(ts) / 60.0, series("rss_mb", kept), 1)[0] if len(ts) > 2 else float("nan")
        per_worker.append({"pid": pid, "rss_first_mb": round(float(rss_first), 1), "rss_last_mb": round(float(rss_last), 1),
                           "rss_growth_mb": round(float(rss_last - rss_first), 1),
                           "rss_anon_growth_mb": round(float(anon_last - anon_first), 1),
                           "rss_slope_mb_per_min": round(float(slope), 3)})
    return {"window_s": [kept[0]["t"], kept[-1]["t"]], "samples": len(kept), "workers": per_worker,
            "max_rss_growth_mb": max(w["rss_growth_mb"] for w in per_worker)}


def max_rss(summary: dict[str, Any]) -> dict[str, Any]:
    """Largest RSS (and its PSS/anon split) any worker showed in any memory snapshot or sample."""
    snaps: list[dict[str, Any]] = []
    for rows in summary.get("memory", {}).values():
        snaps.extend(rows)
    for sample in (summary.get("soak") or {}).get("memory_samples", []):
        snaps.extend(sample["memory"])
    if not snaps:
        return {}
    worst = max(snaps, key=lambda m: m["rss_mb"])
    return {"rss_mb": worst["rss_mb"], "pss_mb": worst["pss_mb"], "rss_anon_mb": worst["rss_anon_mb"],
            "rss_file_mb": worst["rss_file_mb"], "uss_mb": worst["uss_mb"],
            "max_pss_mb": max(m["pss_mb"] for m in snaps)}


def verdict(measured: float | None, limit: float, kind: str) -> dict[str, Any]:
    """{measured, target, ok} where kind 'min' means measured >= limit and 'max' means <= limit."""
    ok = None if measured is None else (measured >= limit if kind == "min" else measured <= limit)
    return {"measured": measured, "target": f"{'>=' if kind == 'min' else '<='} {limit}", "ok": ok}


def verdicts(summary: dict[str, Any]) -> dict[str, Any]:
    """Pass/fail of every target next to the measured figure."""
    out: dict[str, Any] = {}
    startup = summary.get("startup", {})
    out["startup_s"] = verdict(startup.get("all_workers_ready_s"), TARGETS["startup_s_max"], "max")
    out["rss_mb_per_worker"] = verdict(summary.get("rss_max", {}).get("rss_mb"), TARGETS["rss_mb_per_worker_max"], "max")
    loc = summary.get("locust")
    if loc:
        out["locust_failures"] = verdict(loc["failures"], TARGETS["locust"]["failures_max"], "max")
        out["locust_p99_ms"] = verdict(loc["latency_ms"]["p99"], TARGETS["locust"]["p99_ms_max"], "max")
        out["locust_duration_s"] = verdict(loc["duration_s"], TARGETS["locust"]["duration_s_min"], "min")
    wrk = summary.get("wrk", {})
    for label, key in (("wrk_c100", "c100"), ("wrk_c1000", "c1000")):
        run = wrk.get("service", {}).get(key)
        if not run:
            continue
        t = TARGETS[label]
        out[f"{label}_rps"] = verdict(run["rps"], t["rps_min"], "min")
        out[f"{label}_p99_ms"] = verdict(run["latency_ms"]["p99"], t["p99_ms_max"], "max")
        if "timeouts_max" in t:
            out[f"{label}_timeouts"] = verdict(run["timeouts"], t["timeouts_max"], "max")
        ratio = wrk.get("ratio_to_trivial", {}).get(key)
        out[f"{label}_ratio_to_trivial"] = verdict(ratio, TARGETS["ratio_to_trivial_min"], "min")
    soak = summary.get("soak")
    if soak and "growth" in soak:
        out["soak_rss_growth_mb"] = verdict(soak["growth"].get("max_rss_growth_mb"), TARGETS["soak_rss_growth_mb_max"],
                                            "max")
        out["soak_failures"] = verdict(soak["failures"], 0, "max")
    return out


def fmt(value: Any, digits: int = 1) -> str:
    """A table cell: numbers rounded, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def mark(v: dict[str, Any] | None) -> str:
    """✅ / ❌ / – for a verdict."""
    if not v or v.get("ok") is None:
        return "–"
    return "✅" if v["ok"] else "❌"


def table_rows(s: dict[str, Any]) -> list[tuple[str, Any, str, Any, str]]:
    """(metric, original, target, measured, pass) rows of the report table."""
    v = s.get("verdicts", {})
    t = TARGETS
    rows: list[tuple[str, Any, str, Any, str]] = [
        ("start-up to /health ready, all workers (s)", ORIGINAL["startup_s"], f"≤ {t['startup_s_max']}",
         s.get("startup", {}).get("all_workers_ready_s"), mark(v.get("startup_s"))),
        ("max RSS per worker (MB)", ORIGINAL["rss_mb_per_worker"], f"≤ {t['rss_mb_per_worker_max']}",
         s.get("rss_max", {}).get("rss_mb"), mark(v.get("rss_mb_per_worker"))),
        ("  … of which file-backed cache pages (MB) / PSS (MB)", None, "",
         f"{fmt(s.get('rss_max', {}).get('rss_file_mb'))} / {fmt(s.get('rss_max', {}).get('pss_mb'))}", ""),
    ]
    wrk = s.get("wrk", {})
    for key, run in wrk.get("service", {}).items():
        label = f"wrk_{key}"
        orig, tt = ORIGINAL.get(label, {}), t.get(label, {})
        triv = wrk.get("trivial", {}).get(key, {})
        rows += [
            (f"wrk -t1 -{key} req/s", orig.get("rps"), f"≥ {tt['rps_min']:,.0f}" if tt else "", run["rps"],
             mark(v.get(f"{label}_rps"))),
            (f"wrk -{key} p50 (ms)", orig.get("p50_ms"), "", run["latency_ms"]["p50"], ""),
            (f"wrk -{key} p99 (ms)", orig.get("p99_ms"), f"≤ {tt['p99_ms_max']}" if tt else "", run["latency_ms"]["p99"],
             mark(v.get(f"{label}_p99_ms"))),
            (f"wrk -{key} socket timeouts / other errors", orig.get("timeouts"),
             "0" if "timeouts_max" in tt else "", f"{run['timeouts']} / "
             f"{sum(x for k2, x in run['errors'].items() if k2 != 'timeout')}", mark(v.get(f"{label}_timeouts"))),
            (f"wrk -{key} ratio to trivial FastAPI endpoint", None, f"≥ {t['ratio_to_trivial_min']}" if tt else "",
             wrk.get("ratio_to_trivial", {}).get(key), mark(v.get(f"{label}_ratio_to_trivial"))),
            (f"  trivial endpoint -{key}: req/s, p50 / p99 (ms)", None, "",
             f"{fmt(triv.get('rps'))}, {fmt(triv.get('latency_ms', {}).get('p50'))} / "
             f"{fmt(triv.get('latency_ms', {}).get('p99'))}", ""),
        ]
        routed = wrk.get("service_fastapi_routing", {}).get(key)
        if routed:
            rows.append((f"  service with the fast lane off -{key}: req/s, p50 / p99 (ms), timeouts", None, "",
                         f"{fmt(routed.get('rps'))}, {fmt(routed['latency_ms'].get('p50'))} / "
                         f"{fmt(routed['latency_ms'].get('p99'))}, {routed.get('timeouts')}", ""))
    loc = s.get("locust")
    if loc:
        o = ORIGINAL["locust"]
        rows += [
            (f"locust {loc['users']:,} users req/s (whole run / steady)", o["rps"], "",
             f"{fmt(loc['rps'])} / {fmt(loc['rps_steady'])}", ""),
            ("locust p50 (ms)", o["p50_ms"], "", loc["latency_ms"]["p50"], ""),
            ("locust p99 (ms)", o["p99_ms"], f"≤ {t['locust']['p99_ms_max']}", loc["latency_ms"]["p99"],
             mark(v.get("locust_p99_ms"))),
            ("locust failures / requests", o["failures"], "0", f"{loc['failures']:,} / {loc['requests']:,}",
             mark(v.get("locust_failures"))),
            ("locust duration (s)", None, f"≥ {t['locust']['duration_s_min']:.0f}", loc["duration_s"],
             mark(v.get("locust_duration_s"))),
            ("locust CPU, mean (% of one core)", 100.0, "", loc["cpu"].get("locust_mean_pct"), ""),
        ]
    soak = s.get("soak")
    if soak and "growth" in soak:
        g = soak["growth"]
        rows += [
            (f"soak {soak['duration_s']} s: max RSS growth per worker (MB)", None,
             f"≤ {t['soak_rss_growth_mb_max']}", g.get("max_rss_growth_mb"), mark(v.get("soak_rss_growth_mb"))),
            ("soak failures / requests", None, "0", f"{soak['failures']:,} / {soak['requests']:,}",
             mark(v.get("soak_failures"))),
        ]
    return rows


def render_markdown(s: dict[str, Any]) -> str:
    """summary.md: the comparison table plus the conditions it was measured under."""
    m, run = s["machine"], s["run"]
    lines = [
        "# Load test: audience service vs the original",
        "",
        f"Generated by `python -m loadtest.run` from summary.json on {s['generated_at']}."
        + (" **Tiny smoke run: not comparable with the original.**" if run["tiny"] else ""),
        "",
        f"- machine: {m['cores']} cores, {m['memory_gb']} GiB, Python {m['python']}; at start: machine CPU "
        f"{m['load']['machine_cpu_pct_at_start']} %, load average {m['load']['loadavg_at_start']} (waited "
        f"{m['load']['waited_s']} s); during the run: max 1-min load {s.get('loadavg_1m_max_during_run')}, CPU "
        f"used by other processes up to {s.get('rest_of_machine_max_pct')} % of one core (phase means)",
        f"- service: {run['workers']} uvicorn workers (uvicorn {m['versions'].get('uvicorn')}, "
        f"loop {run['uvicorn']['loop']}, http {run['uvicorn']['http']}, "
        f"{run['uvicorn'].get('listeners', 'one shared socket')}), fast lane "
        f"{'on' if run.get('fast_lane', True) else 'off'}, cache {s['cache'].get('products'):,} products "
        f"× N={s['cache'].get('n')}; load generator on the same machine, 127.0.0.1",
        f"- locust: {run['users']:,} FastHttpUsers, spawn {run['spawn_rate']:g}/s, {run['duration_s']} s, think time "
        f"{run['think_time_s']} s, {run['locust_processes']} process(es); wrk 4.1: 1 thread, {run['wrk_duration_s']} s "
        f"per run, 2 s socket timeout",
        "",
        "| metric | original | target | measured | pass |",
        "| --- | ---: | ---: | ---: | :---: |",
    ]
    for metric, orig, target, measured, ok in table_rows(s):
        lines.append(f"| {metric} | {fmt(orig)} | {target} | {fmt(measured, 2 if isinstance(measured, float) and measured < 10 else 1)} | {ok} |")
    lines += ["", "CPU per phase (mean % of one core; the machine has "
              f"{m['cores']} cores):", "", "| phase | service workers | load generator | other processes |",
              "| --- | ---: | ---: | ---: |"]
    for name, phase in phases(s):
        cpu = phase.get("cpu", {})
        gen = cpu.get("locust_mean_pct", cpu.get("wrk_mean_pct"))
        lines.append(f"| {name} | {fmt(cpu.get('service_mean_pct'))} "
                     f"({' + '.join(fmt(x) for x in cpu.get('service_per_worker_mean_pct', []))}) | {fmt(gen)} | "
                     f"{fmt(cpu.get('rest_of_machine_mean_pct'))} |")
    if s.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in s["notes"]]
    return "\n".join(lines) + "\n"


README_START = "<!-- loadtest-summary:start (generated by python -m loadtest.run from reports/loadtest/summary.json) -->"
README_END = "<!-- loadtest-summary:end -->"


def readme_block(s: dict[str, Any]) -> str:
    """The README's load-test table: the report's rows that have a target or an original figure."""
    run, checks = s["run"], s.get("verdicts", {})
    met = sum(1 for v in checks.values() if v.get("ok"))
    lines = [README_START, "",
             f"Latest full run ({s['generated_at'][:10]}; {s['machine']['cores']} cores, {run['workers']} workers, "
             f"load generator on the same machine): {met} of {len(checks)} targets met"
             + ("" if s.get("soak") else "; no soak in this run") + ".",
             "", "| metric | original | target | measured | pass |", "| --- | ---: | ---: | ---: | :---: |"]
    for metric, orig, target, measured, ok in table_rows(s):
        if target or orig is not None:
            digits = 2 if isinstance(measured, float) and measured < 10 else 1
            lines.append(f"| {metric.strip()} | {fmt(orig)} | {target} | {fmt(measured, digits)} | {ok} |")
    return "\n".join(lines + ["", README_END])


def update_readme(readme: Path, block: str) -> bool:
    """Replace the text between the load-test markers in `readme` with `block`; False if the markers are missing."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    readme.write_text(text[:start] + block + text[end + len(README_END):], encoding="utf-8")
    return True


def phases(s: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, result) of every load phase that ran, in order."""
    out = [(label, s[key]) for key, label in (("locust", "locust"), ("soak", "soak")) if s.get(key)]
    for app, label in (("service", "service"), ("trivial", "trivial"), ("service_fastapi_routing", "service, lane off")):
        for key, run in s.get("wrk", {}).get(app, {}).items():
            out.append((f"wrk {label} -{key}", run))
    return out


def plot_history(history_csv: Path, png: Path, title: str, memory: list[dict[str, Any]] | None = None) -> bool:
    """Chart req/s, failures/s and latency percentiles over time (plus worker RSS when given); False if no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_csv_rows(history_csv) if r.get("Name") == "Aggregated"]
    if not rows:
        return False
    t0 = float(rows[0]["Timestamp"])
    t = [float(r["Timestamp"]) - t0 for r in rows]
    panels = 3 if memory else 2
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3.2 * panels), sharex=True)
    ax = axes[0]
    ax.plot(t, [num(r["Requests/s"]) or 0 for r in rows], label="req/s")
    ax.plot(t, [num(r["Failures/s"]) or 0 for r in rows], label="failures/s", color="tab:red")
    ax.set_ylabel("requests / s")
    users = ax.twinx()
    users.plot(t, [num(r["User Count"]) or 0 for r in rows], color="grey", linestyle=":", label="users")
    users.set_ylabel("users")
    ax.legend(loc="upper left")
    ax.set_title(title)
    ax = axes[1]
    for col in ("50%", "90%", "99%"):
        ax.plot(t, [num(r[col]) for r in rows], label=f"p{col.rstrip('%')}")
    ax.set_ylabel("latency (ms, last 10 s window)")
    ax.legend(loc="upper left")
    if memory:
        ax = axes[2]
        pids = sorted({m["pid"] for s in memory for m in s["memory"]})
        for pid in pids:
            ax.plot([s["t"] for s in memory for m in s["memory"] if m["pid"] == pid],
                    [m["rss_mb"] for s in memory for m in s["memory"] if m["pid"] == pid], label=f"worker {pid} RSS")
            ax.plot([s["t"] for s in memory for m in s["memory"] if m["pid"] == pid],
                    [m["rss_anon_mb"] for s in memory for m in s["memory"] if m["pid"] == pid], linestyle="--",
                    label=f"worker {pid} anonymous RSS")
        ax.set_ylabel("MB")
        ax.legend(loc="lower right", fontsize=8)
    axes[-1].set_xlabel("seconds since locust start")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------------------------------


def clean_outputs(out: Path) -> None:
    """Remove a previous run's outputs (only the files this runner writes)."""
    out.mkdir(parents=True, exist_ok=True)
    for pattern in OUTPUT_PATTERNS:
        for path in out.glob(pattern):
            path.unlink()


def raise_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM handler: unwind like Ctrl-C so every started process is stopped."""
    raise KeyboardInterrupt(f"signal {signum}")


def machine_facts(load: dict[str, Any]) -> dict[str, Any]:
    """Cores, memory, versions and the load average seen at start."""
    return {"cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
            "python": platform.python_version(), "platform": platform.platform(), "load": load,
            "versions": {name: package_version(name) for name in ("uvicorn", "fastapi", "starlette", "locust",
                                                                   "uvloop", "httptools", "orjson")}}


def serve(stack: contextlib.ExitStack, name: str, module: str, cache_dir: Path, plan: Plan, work: Path) -> Server:
    """Start one app on a free port, register its stop, and wait until every worker answers /health."""
    env = server_env(cache_dir, free_port(), plan.workers, plan.fast_lane)
    server = start_server(name, module, env, plan.workers, work / f"{name}.log")
    stack.callback(stop_server, server)
    print(f"starting {name} ({plan.workers} workers) at {server.base} ...", flush=True)
    server.ready = wait_ready(server)
    return server


def service_phase(stack: contextlib.ExitStack, plan: Plan, cache_dir: Path, fixture: Path, ids_file: Path,
                  wrk: str | None, work: Path, summary: dict[str, Any]) -> None:
    """Start the service, measure start-up and memory, run locust (and the soak), then wrk against it."""
    server = serve(stack, "service", "service", cache_dir, plan, work)
    summary["startup"] = server.ready
    time.sleep(1.0)
    summary["memory"] = {"after_startup": worker_memory(server.worker_procs())}
    print(f"  ready: {server.ready}", flush=True)
    if plan.duration_s > 0:
        print(f"  locust {plan.users} users, {plan.duration_s} s ...", flush=True)
        summary["locust"] = run_locust(server, fixture, plan, plan.duration_s, plan.out / "locust", work)
        summary["memory"]["after_locust"] = worker_memory(server.worker_procs())
    if plan.soak_s > 0:
        print(f"  soak: locust {plan.users} users, {plan.soak_s} s, RSS every 5 s ...", flush=True)
        soak = run_locust(server, fixture, plan, plan.soak_s, plan.out / "soak", work, memory_interval=5.0)
        soak["growth"] = memory_growth(soak["memory_samples"], skip_s=plan.users / plan.spawn_rate + 30.0)
        summary["soak"] = soak
    if wrk:
        summary.setdefault("wrk", {})["service"] = wrk_series(wrk, server, ids_file, plan, work)
        summary["memory"]["after_wrk"] = worker_memory(server.worker_procs())
    summary["service_exit_code"] = stop_server(server)


def trivial_phase(stack: contextlib.ExitStack, plan: Plan, cache_dir: Path, ids_file: Path, wrk: str,
                  work: Path, summary: dict[str, Any]) -> None:
    """The same wrk runs against the trivial FastAPI app served the same way: the framework ceiling."""
    server = serve(stack, "trivial", "loadtest.trivial_app", cache_dir, plan, work)
    summary["wrk"]["trivial"] = wrk_series(wrk, server, ids_file, plan, work)
    stop_server(server)
    summary["wrk"]["ratio_to_trivial"] = {
        key: round(run["rps"] / summary["wrk"]["trivial"][key]["rps"], 3)
        for key, run in summary["wrk"]["service"].items() if summary["wrk"]["trivial"][key]["rps"] > 0
    }


def routing_phase(stack: contextlib.ExitStack, plan: Plan, cache_dir: Path, ids_file: Path, wrk: str,
                  work: Path, summary: dict[str, Any]) -> None:
    """The service's wrk runs again with the fast lane off (RECSYS_FAST_LANE=false): what the lane adds."""
    server = serve(stack, "service-routing", "service", cache_dir, replace(plan, fast_lane=False), work)
    summary["wrk"]["service_fastapi_routing"] = wrk_series(wrk, server, ids_file, plan, work)
    stop_server(server)


def notes_for(summary: dict[str, Any], plan: Plan) -> list[str]:
    """Plain-language caveats that belong next to the numbers."""
    notes = []
    if summary["fixture"]["exclusion_skipped"]:
        notes.append(summary["fixture"]["exclusion_skipped"])
    else:
        notes.append(f"exclusion spot-check on {summary['fixture']['exclusion_products']} products "
                     "(half the most-interacted, half random) against data/prepared/interactions.parquet")
    if summary["run"]["uvicorn"]["http"] == "h11" or summary["run"]["uvicorn"]["loop"].startswith("asyncio"):
        notes.append("uvicorn runs with the pure-Python h11 parser and/or the asyncio loop: httptools and uvloop "
                     "are not installed in this environment")
    if not summary["machine"]["load"]["quiet"]:
        notes.append("the machine was not quiet at start (other jobs running): figures are lower than on an idle box")
    busy = [name for name, phase in phases(summary) if phase.get("cpu", {}).get("rest_of_machine_mean_pct", 0) > 25]
    if busy:
        notes.append(f"other processes took more than a quarter of a core during: {', '.join(busy)}; those figures "
                     "understate what the service does on a quiet machine")
    if not summary["comparable_with_original"]:
        notes.append("this run's scenario differs from the original's (users, duration, workers or wrk length)")
    for name, phase in phases(summary):
        split = phase.get("cpu", {}).get("service_per_worker_mean_pct", [])
        if len(split) > 1 and max(split) > 10 and min(split) < 0.5 * max(split):
            notes.append(f"{name}: connections were spread unevenly over the workers (worker CPU "
                         f"{' / '.join(fmt(x) for x in split)} %): uvicorn's workers share one listening socket and "
                         "the worker that wakes first accepts a whole burst of new connections")
    notes.append("RSS counts the memory-mapped cache pages a worker has touched; those pages are shared by all "
                 "workers through the page cache (PSS splits them)")
    return notes


def main(argv: list[str] | None = None) -> int:
    """Run every phase, always stop what was started, write the report; exit code 0 when it completed."""
    plan = make_plan(parse_args(argv))
    signal.signal(signal.SIGTERM, raise_interrupt)
    work = Path(tempfile.mkdtemp(prefix="loadtest-"))
    clean_outputs(plan.out)
    summary: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds")}
    from recsys.cache.build import cache_facts, open_or_build

    ok = False
    try:
        with contextlib.ExitStack() as stack:
            load = wait_for_quiet(plan.max_load_wait_s, plan.busy_threshold)
            if plan.tiny:
                cache_dir, prepared = tiny_cache(work)
                summary["cache_build"] = {"built": True, "tiny": True}
            else:
                cache_dir, prepared = plan.cache_dir or config.CACHE_DIR, config.PREPARED_PARQUET
                summary["cache_build"] = open_or_build(cache_dir)
            summary["cache"] = cache_facts(cache_dir)
            fx = build_fixture(cache_dir, prepared)
            fixture, ids_file = work / "fixture.json", work / "ids.txt"
            fixture.write_text(json.dumps(fx))
            ids_file.write_text("\n".join(str(i) for i in fx["known_ids"]) + "\n")
            summary["fixture"] = {"known_ids": len(fx["known_ids"]), "unknown_ids": len(fx["unknown_ids"]),
                                  "exclusion_products": len(fx["exclusion"]),
                                  "exclusion_customers": sum(len(v) for v in fx["exclusion"].values()),
                                  "exclusion_skipped": fx["exclusion_skipped"]}
            summary["machine"] = machine_facts(load)
            summary["run"] = {"workers": plan.workers, "users": plan.users, "spawn_rate": plan.spawn_rate,
                              "duration_s": plan.duration_s, "wrk_duration_s": plan.wrk_duration_s,
                              "wrk_connections": list(plan.wrk_connections), "soak_s": plan.soak_s, "tiny": plan.tiny,
                              "think_time_s": plan.wait, "locust_processes": plan.locust_processes,
                              "fast_lane": plan.fast_lane, "uvicorn": uvicorn_implementation(server_env(cache_dir, 1, plan.workers))}
            summary["comparable_with_original"] = (not plan.tiny and plan.workers == 2 and plan.users == 1000
                                                   and plan.duration_s >= 60 and plan.wrk_duration_s >= 30)
            wrk, why = (None, "skipped (--skip-wrk)") if plan.skip_wrk else ensure_wrk()
            summary["wrk_status"] = why
            if wrk is None and not plan.skip_wrk:
                print(f"wrk unavailable: {why}; continuing without the wrk runs", file=sys.stderr)
            service_phase(stack, plan, cache_dir, fixture, ids_file, wrk, work, summary)
            if wrk:
                trivial_phase(stack, plan, cache_dir, ids_file, wrk, work, summary)
                if plan.fast_lane:
                    routing_phase(stack, plan, cache_dir, ids_file, wrk, work, summary)
        ok = True
    except KeyboardInterrupt:
        print("interrupted: every started process was stopped", file=sys.stderr)
    finally:
        finish(summary, plan, work, ok)
    return 0 if ok else 1


def finish(summary: dict[str, Any], plan: Plan, work: Path, ok: bool) -> None:
    """Write summary.json, summary.md and charts (also for a partial run), then tidy the work dir."""
    summary["completed"] = ok
    if "run" in summary:
        summary["rss_max"] = max_rss(summary)
        with_cpu = [phase["cpu"] for _, phase in phases(summary) if phase.get("cpu")]
        summary["loadavg_1m_max_during_run"] = max((c["loadavg_1m_max"] for c in with_cpu), default=None)
        summary["rest_of_machine_max_pct"] = max((c["rest_of_machine_mean_pct"] for c in with_cpu), default=None)
        summary["original"] = ORIGINAL
        summary["targets"] = TARGETS
        summary["verdicts"] = verdicts(summary)
        summary["notes"] = notes_for(summary, plan)
    plan.out.mkdir(parents=True, exist_ok=True)
    (plan.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if "run" in summary:
        (plan.out / "summary.md").write_text(render_markdown(summary))
        label = f"{summary['run']['users']} users, {summary['run']['workers']} workers"
        plot_history(plan.out / "locust_stats_history.csv", plan.out / "locust_history.png", f"locust: {label}")
        if summary.get("soak"):
            plot_history(plan.out / "soak_stats_history.csv", plan.out / "soak_history.png",
                         f"soak {summary['soak']['duration_s']} s: {label}", summary["soak"].get("memory_samples"))
        if ok and summary.get("comparable_with_original") and plan.out == OUT_DIR:  # only full runs of record
            readme = ROOT / "README.md"
            if update_readme(readme, readme_block(summary)):
                print(f"updated the load-test table in {readme}")
            else:
                print(f"{readme} has no load-test markers; table not written", file=sys.stderr)
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"logs kept in {work}", file=sys.stderr)
    print(f"wrote {plan.out / 'summary.json'}" + (f" and {plan.out / 'summary.md'}" if "run" in summary else ""))


if __name__ == "__main__":
    sys.exit(main())
