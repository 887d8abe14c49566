"""The load-test runner end to end in --tiny mode (seconds, tiny cache, few users) and the locust validators.

Never asserts throughput or latency: only that every phase ran, the summary has its fields and the
validated request mix saw zero failures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from recsys.config import PROJ_ROOT

pytestmark = pytest.mark.server

RUN_TIMEOUT_S = 240  # generous bound for a loaded machine; the tiny run takes ~30 s


@pytest.fixture(scope="module")
def tiny_summary(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """Run `python -m loadtest.run --tiny` once (wrk runs only when wrk is installed) and load summary.json."""
    out = tmp_path_factory.mktemp("loadtest")
    cmd = [sys.executable, "-m", "loadtest.run", "--tiny", "--workers", "2", "--out", str(out)]
    if shutil.which("wrk") is None:
        cmd.append("--skip-wrk")
    proc = subprocess.run(cmd, cwd=PROJ_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, f"runner failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((out / "summary.json").read_text()), out


def test_the_keys_phase_sends_a_key_that_the_service_accepts(tiny_summary: tuple[dict[str, Any], Path]) -> None:
    summary, out = tiny_summary
    keyed = summary["keys_on"]
    assert summary["run"]["keys_phase"] is True
    assert keyed["locust"]["requests"] > 0 and keyed["locust"]["failures"] == 0  # a 401 would be a failure
    if summary.get("wrk_status") != "skipped (--skip-wrk)" and keyed.get("wrk"):
        for run in keyed["wrk"].values():
            assert run["requests"] > 0 and run["errors"]["status"] == 0  # no 401 (non-2xx) among them
        assert set(keyed["wrk_rps_ratio_keys_on_to_off"]) == set(keyed["wrk"])
    assert "API keys off vs on" in (out / "summary.md").read_text()


def test_tiny_run_completes_with_zero_failures(tiny_summary: tuple[dict[str, Any], Path]) -> None:
    summary, _ = tiny_summary
    assert summary["completed"] is True
    assert summary["run"]["tiny"] is True and summary["comparable_with_original"] is False
    loc = summary["locust"]
    assert loc["requests"] > 0
    assert loc["failures"] == 0, loc["failure_reasons"]
    assert {
        "/recommend/[known]",
        "/recommend/[unknown]",
        "/recommend/[spot-check]",
        "/recommend/batch",
        "/health",
    } <= set(loc["endpoints"])
    assert summary["fixture"]["exclusion_skipped"] is None and summary["fixture"]["exclusion_products"] > 0


def test_summary_has_report_fields(tiny_summary: tuple[dict[str, Any], Path]) -> None:
    summary, out = tiny_summary
    for key in ("machine", "run", "cache", "startup", "memory", "rss_max", "original", "targets", "verdicts"):
        assert key in summary, key
    assert summary["machine"]["cores"] >= 1 and "loadavg_at_start" in summary["machine"]["load"]
    assert summary["startup"]["all_workers_ready_s"] is not None
    assert len(summary["startup"]["worker_pids_seen"]) == summary["run"]["workers"] == 2
    assert len(summary["memory"]["after_startup"]) == 2 and summary["rss_max"]["rss_mb"] > 0
    for field in ("rps", "latency_ms", "failures", "cpu", "users", "duration_s"):
        assert field in summary["locust"], field
    assert set(summary["locust"]["latency_ms"]) >= {"p50", "p90", "p99", "max"}
    assert {"startup_s", "rss_mb_per_worker", "locust_failures", "locust_p99_ms"} <= set(summary["verdicts"])
    assert (out / "summary.md").read_text().startswith("# Load test")
    assert (out / "locust_stats.csv").is_file() and (out / "locust_history.png").stat().st_size > 0


def test_wrk_runs_against_service_and_trivial_app(tiny_summary: tuple[dict[str, Any], Path]) -> None:
    summary, _ = tiny_summary
    if "wrk" not in summary:
        pytest.skip(f"wrk not installed: {summary['wrk_status']}")
    for app in ("service", "trivial", "service_fastapi_routing"):  # the last: the service with its fast lane off
        for run in summary["wrk"][app].values():
            assert run["requests"] > 0
            assert run["errors"]["status"] == 0  # every random id was a known product (200)
    assert set(summary["wrk"]["ratio_to_trivial"]) == set(summary["wrk"]["service"])
    assert summary["run"]["fast_lane"] is True
    assert summary["run"]["uvicorn"]["listeners"] == "one SO_REUSEPORT socket per worker"


def test_readme_table_is_written_between_the_markers_only(
    tiny_summary: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    from loadtest.readme import README_END, README_START, readme_block, update_readme

    summary, out = tiny_summary
    block = readme_block(summary)
    assert block.startswith(README_START) and block.endswith(README_END)
    met = sum(1 for v in summary["verdicts"].values() if v["ok"])
    assert f"{met} of {len(summary['verdicts'])} targets met" in block
    assert "| start-up to /health ready, all workers (s) | 248.0 | ≤ 3.0 |" in block
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\nbefore\n{README_START}\nold table\n{README_END}\nafter\n")
    assert update_readme(readme, block)
    text = readme.read_text()
    assert text == f"# t\n\nbefore\n{block}\nafter\n" and "old table" not in text
    assert update_readme(readme, block) and readme.read_text() == text  # idempotent
    bare = tmp_path / "BARE.md"
    bare.write_text("no markers\n")
    assert update_readme(bare, block) is False and bare.read_text() == "no markers\n"
    # a tiny run never touches the project's README
    assert "Tiny" in (out / "summary.md").read_text() and summary["comparable_with_original"] is False


def test_locust_validators_flag_bad_answers() -> None:
    """The checks in loadtest/locustfile.py, run in a child process (importing locust monkey-patches with gevent)."""
    code = textwrap.dedent("""
        from loadtest.locustfile import Fixture, check_audience, check_batch
        fx = Fixture(known_ids=[7], available={"7": (3, False)}, unknown_ids=[99], fallback_size=2, n_max=100,
                     exclusion={"7": frozenset({42})}, exclusion_skipped=None)
        recs = [{"customer_id": c, "score": s, "rank": r} for c, s, r in ((1, 0.9, 1), (2, 0.5, 2), (3, 0.5, 3))]
        good = {"product_id": 7, "recommendations": recs, "count": 3, "cold_start": False, "model": "v"}
        assert check_audience(good, 7, 5, fx) is None
        assert "count" in check_audience(good, 7, 2, fx)
        rising = [dict(r, score=s) for r, s in zip(recs, (0.1, 0.5, 0.9), strict=True)]
        assert "non-increasing" in check_audience({**good, "recommendations": rising}, 7, 5, fx)
        assert "ranks" in check_audience({**good, "recommendations": [dict(r, rank=1) for r in recs]}, 7, 5, fx)
        bad = [dict(recs[0], customer_id=42), *recs[1:]]
        assert "interacted" in check_audience({**good, "recommendations": bad}, 7, 5, fx)
        cold = {"product_id": 99, "recommendations": recs[:2], "count": 2, "cold_start": True, "model": "v"}
        assert check_audience(cold, 99, 10, fx) is None
        assert "cold_start" in check_audience({**cold, "cold_start": False}, 99, 10, fx)
        assert check_batch({"items": [good, cold], "count": 2}, [7, 99], 5, fx) is None
        assert "items" in check_batch({"items": [good], "count": 1}, [7, 99], 5, fx)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJ_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
