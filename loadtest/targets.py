"""The original service's figures (issue #8), the targets, and the pass/fail verdict of each."""

from __future__ import annotations

from typing import Any

# The original service, measured on a machine like ours (2 cores, ~200K products, 2 uvicorn workers,
# load generator on the same machine). Figures as reported in issue #8.
ORIGINAL: dict[str, Any] = {
    "startup_s": 248.0,
    "rss_mb_per_worker": 2500.0,
    "wrk_c100": {"rps": 13424.0, "p50_ms": 9.3, "p99_ms": 40.5, "timeouts": None},
    "wrk_c1000": {"rps": 11641.0, "p50_ms": 79.0, "p99_ms": 189.0, "timeouts": 107},
    "locust": {
        "users": 1000,
        "rps": 2146.0,
        "p50_ms": 240.0,
        "p99_ms": 380.0,
        "failures": 0,
        "note": "HttpUser; locust at 100% CPU",
    },
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


def verdict(measured: float | None, limit: float, kind: str) -> dict[str, Any]:
    """{measured, target, ok} where kind 'min' means measured >= limit and 'max' means <= limit."""
    ok = None if measured is None else (measured >= limit if kind == "min" else measured <= limit)
    return {"measured": measured, "target": f"{'>=' if kind == 'min' else '<='} {limit}", "ok": ok}


def verdicts(summary: dict[str, Any]) -> dict[str, Any]:
    """Pass/fail of every target next to the measured figure."""
    out: dict[str, Any] = {}
    startup = summary.get("startup", {})
    out["startup_s"] = verdict(startup.get("all_workers_ready_s"), TARGETS["startup_s_max"], "max")
    out["rss_mb_per_worker"] = verdict(
        summary.get("rss_max", {}).get("rss_mb"), TARGETS["rss_mb_per_worker_max"], "max"
    )
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
        out["soak_rss_growth_mb"] = verdict(
            soak["growth"].get("max_rss_growth_mb"), TARGETS["soak_rss_growth_mb_max"], "max"
        )
        out["soak_failures"] = verdict(soak["failures"], 0, "max")
    return out
