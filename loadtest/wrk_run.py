"""Run wrk (random known product ids, loadtest/wrk_random.lua) against a served app; install it when missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess  # nosec B404 # runs wrk and the repository's install script
import time
from pathlib import Path
from typing import Any

from loadtest.monitor import cpu_summary, loadavg, proc_tree, sampling, wait_for_quiet
from loadtest.plan import WRK_SCRIPT, Plan
from loadtest.servers import Server
from recsys.config import PROJ_ROOT
from service.processes import run_bounded


def ensure_wrk() -> tuple[str | None, str]:
    """Path of wrk, installing it with scripts/ensure_deb.sh when missing; else None with the reason."""
    found = shutil.which("wrk")
    if found:
        return found, "found"
    print("installing wrk (scripts/ensure_deb.sh) ...", flush=True)
    proc = subprocess.run(  # nosec B603 B607 # the repository's own script via bash from PATH, fixed argv, no shell
        ["bash", str(PROJ_ROOT / "scripts" / "ensure_deb.sh"), "wrk", "wrk"],
        check=False,
        timeout=600,
        capture_output=True,
        text=True,
    )
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


def run_wrk(
    wrk: str, server: Server, ids_file: Path, connections: int, duration_s: int, work: Path, threads: int = 1
) -> dict[str, Any]:
    """`wrk -t1 -cC -dDs` with random known product ids against `server`; its figures plus CPU use.

    With `server.api_key` every request carries it (``WRK_API_KEY`` for loadtest/wrk_random.lua).
    """
    log = work / f"wrk_{server.name}_c{connections}.log"
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        "-s",
        str(WRK_SCRIPT),
        server.base,
        "--",
        str(ids_file),
    ]
    pid: dict[str, int] = {}
    load0 = loadavg()
    with sampling({"wrk": proc_tree(lambda: pid.get("wrk")), "service": server.worker_procs}, 1.0) as sampler:
        env = dict(os.environ, WRK_API_KEY=server.api_key or "")
        code = run_bounded(cmd, env, duration_s + 60, log, on_start=lambda p: pid.update(wrk=p))
    text = log.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"wrk exited with {code}:\n{text[-2000:]}")
    raw = parse_wrk(text)
    lat = raw["latency_ms"]
    return {
        "tool": "wrk",
        "app": server.name,
        "threads": threads,
        "connections": connections,
        "duration_s": round(raw["duration_s"], 2),
        "requests": raw["requests"],
        "rps": round(raw["rps"], 1),
        "latency_ms": {k: round(lat[k], 2) for k in ("p50", "p90", "p99", "p999", "max", "mean")},
        "timeouts": raw["errors"]["timeout"],
        "errors": raw["errors"],
        "socket_timeout_s": 2,
        "cpu": cpu_summary(sampler.samples),
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
    }


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
