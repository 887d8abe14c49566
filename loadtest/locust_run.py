"""Run locust headless against a served app and read its CSV files into figures."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any

from loadtest.monitor import cpu_summary, loadavg, proc_tree, sampling, wait_for_quiet
from loadtest.plan import LOCUSTFILE, Plan
from loadtest.servers import Server
from service.processes import run_bounded


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
    endpoints = {
        r["Name"]: {
            "requests": int(num(r["Request Count"]) or 0),
            "failures": int(num(r["Failure Count"]) or 0),
            "p50_ms": num(r["50%"]),
            "p99_ms": num(r["99%"]),
        }
        for r in stats
        if r.get("Name") != "Aggregated"
    }
    return {
        "requests": int(num(agg["Request Count"]) or 0),
        "failures": int(num(agg["Failure Count"]) or 0),
        "rps": round(num(agg["Requests/s"]) or 0.0, 1),
        "rps_steady": steady_rps(history, users),
        "latency_ms": {
            "p50": num(agg["50%"]),
            "p90": num(agg["90%"]),
            "p99": num(agg["99%"]),
            "max": num(agg["100%"]),
            "mean": round(num(agg["Average Response Time"]) or 0.0, 1),
        },
        "endpoints": endpoints,
        "failure_reasons": [
            {"name": r.get("Name"), "error": r.get("Error"), "occurrences": r.get("Occurrences")} for r in failures[:10]
        ],
    }


def run_locust(
    server: Server,
    fixture: Path,
    plan: Plan,
    duration_s: int,
    prefix: Path,
    work: Path,
    memory_interval: float | None = None,
) -> dict[str, Any]:
    """Run locust headless against `server` for `duration_s`, sampling CPU (and memory); return its figures."""
    env = dict(
        os.environ, LOADTEST_FIXTURE=str(fixture), LOADTEST_WAIT=plan.wait, LOADTEST_API_KEY=server.api_key or ""
    )
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(plan.users),
        "-r",
        str(plan.spawn_rate),
        "-t",
        f"{duration_s}s",
        "--host",
        server.base,
        "--csv",
        str(prefix),
        "--only-summary",
        "--stop-timeout",
        "5",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    if plan.locust_processes > 1:
        cmd += ["--processes", str(plan.locust_processes)]
    before = wait_for_quiet(plan.phase_wait_s, plan.busy_threshold)
    pid: dict[str, int] = {}
    interval = memory_interval or 1.0
    groups = {"locust": proc_tree(lambda: pid.get("locust")), "service": server.worker_procs}
    load0 = loadavg()
    with sampling(groups, interval, server.worker_procs if memory_interval else None) as sampler:
        code = run_bounded(
            cmd,
            env,
            duration_s + plan.users / plan.spawn_rate + 120,
            work / f"{prefix.name}.log",
            on_start=lambda p: pid.update(locust=p),
        )
    if code != 0:
        raise RuntimeError(f"locust exited with {code}; see {work / (prefix.name + '.log')}")
    result = {
        "tool": "locust",
        "user_class": "FastHttpUser",
        "users": plan.users,
        "spawn_rate": plan.spawn_rate,
        "duration_s": duration_s,
        "think_time_s": plan.wait,
        "processes": plan.locust_processes,
        **locust_result(prefix, plan.users),
        "cpu": cpu_summary(sampler.samples),
        "loadavg_before": load0,
        "loadavg_after": loadavg(),
        "machine_before": before,
    }
    if memory_interval:
        result["memory_samples"] = [{"t": s["t"], "memory": s["memory"]} for s in sampler.samples]
    return result
