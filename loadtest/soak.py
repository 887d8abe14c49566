"""Memory over a run: each worker's RSS growth during the soak and the largest RSS any worker showed."""

from __future__ import annotations

from typing import Any

import numpy as np


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
        per_worker.append(
            {
                "pid": pid,
                "rss_first_mb": round(float(rss_first), 1),
                "rss_last_mb": round(float(rss_last), 1),
                "rss_growth_mb": round(float(rss_last - rss_first), 1),
                "rss_anon_growth_mb": round(float(anon_last - anon_first), 1),
                "rss_slope_mb_per_min": round(float(slope), 3),
            }
        )
    return {
        "window_s": [kept[0]["t"], kept[-1]["t"]],
        "samples": len(kept),
        "workers": per_worker,
        "max_rss_growth_mb": max(w["rss_growth_mb"] for w in per_worker),
    }


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
    return {
        "rss_mb": worst["rss_mb"],
        "pss_mb": worst["pss_mb"],
        "rss_anon_mb": worst["rss_anon_mb"],
        "rss_file_mb": worst["rss_file_mb"],
        "uss_mb": worst["uss_mb"],
        "max_pss_mb": max(m["pss_mb"] for m in snaps),
    }
