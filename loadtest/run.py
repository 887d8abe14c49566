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

This module orchestrates the phases; each job has its own module: ``plan`` (options), ``servers``
(start/wait/stop the apps), ``fixture`` (what the users request), ``monitor`` (CPU, memory, quiet
machine), ``locust_run`` and ``wrk_run`` (the load generators), ``soak`` (memory growth), ``targets``
(original figures, targets, verdicts), ``report`` (summary.md, charts) and ``readme`` (the README table).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.fixture import build_fixture, tiny_cache
from loadtest.locust_run import run_locust
from loadtest.monitor import machine_facts, wait_for_quiet, worker_memory
from loadtest.plan import OUT_DIR, Plan, make_plan, parse_args
from loadtest.readme import readme_block, update_readme
from loadtest.report import notes_for, phases, plot_history, render_markdown
from loadtest.servers import serve, stop_server, uvicorn_implementation
from loadtest.soak import max_rss, memory_growth
from loadtest.targets import ORIGINAL, TARGETS, verdicts
from loadtest.wrk_run import ensure_wrk, wrk_series
from recsys import config
from service.processes import service_env

OUTPUT_PATTERNS = ("locust_*.csv", "soak_*.csv", "summary.json", "summary.md", "*.png")


def clean_outputs(out: Path) -> None:
    """Remove a previous run's outputs (only the files this runner writes)."""
    out.mkdir(parents=True, exist_ok=True)
    for pattern in OUTPUT_PATTERNS:
        for path in out.glob(pattern):
            path.unlink()


def raise_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM handler: unwind like Ctrl-C so every started process is stopped."""
    raise KeyboardInterrupt(f"signal {signum}")


@dataclass
class Session:
    """What every phase of one run shares: the plan, the cache and fixture, wrk, the work dir and the summary."""

    stack: contextlib.ExitStack  # stops every server a phase started, also on Ctrl-C or an error
    plan: Plan
    cache_dir: Path
    fixture: Path
    ids_file: Path
    wrk: str | None
    work: Path
    summary: dict[str, Any]


def service_phase(run: Session) -> None:
    """Start the service, measure start-up and memory, run locust (and the soak), then wrk against it."""
    plan, summary = run.plan, run.summary
    server = serve(run.stack, "service", "service", run.cache_dir, plan, run.work)
    summary["startup"] = server.ready
    time.sleep(1.0)
    summary["memory"] = {"after_startup": worker_memory(server.worker_procs())}
    print(f"  ready: {server.ready}", flush=True)
    if plan.duration_s > 0:
        print(f"  locust {plan.users} users, {plan.duration_s} s ...", flush=True)
        summary["locust"] = run_locust(server, run.fixture, plan, plan.duration_s, plan.out / "locust", run.work)
        summary["memory"]["after_locust"] = worker_memory(server.worker_procs())
    if plan.soak_s > 0:
        print(f"  soak: locust {plan.users} users, {plan.soak_s} s, RSS every 5 s ...", flush=True)
        soak = run_locust(server, run.fixture, plan, plan.soak_s, plan.out / "soak", run.work, memory_interval=5.0)
        soak["growth"] = memory_growth(soak["memory_samples"], skip_s=plan.users / plan.spawn_rate + 30.0)
        summary["soak"] = soak
    if run.wrk:
        summary.setdefault("wrk", {})["service"] = wrk_series(run.wrk, server, run.ids_file, plan, run.work)
        summary["memory"]["after_wrk"] = worker_memory(server.worker_procs())
    summary["service_exit_code"] = stop_server(server)


def trivial_phase(run: Session, wrk: str) -> None:
    """The same wrk runs against the trivial FastAPI app served the same way: the framework ceiling."""
    wrk_runs = run.summary["wrk"]
    server = serve(run.stack, "trivial", "loadtest.trivial_app", run.cache_dir, run.plan, run.work)
    wrk_runs["trivial"] = wrk_series(wrk, server, run.ids_file, run.plan, run.work)
    stop_server(server)
    wrk_runs["ratio_to_trivial"] = {
        key: round(result["rps"] / wrk_runs["trivial"][key]["rps"], 3)
        for key, result in wrk_runs["service"].items()
        if wrk_runs["trivial"][key]["rps"] > 0
    }


def routing_phase(run: Session, wrk: str) -> None:
    """The service's wrk runs again with the fast lane off (RECSYS_FAST_LANE=false): what the lane adds."""
    plan = replace(run.plan, fast_lane=False)
    server = serve(run.stack, "service-routing", "service", run.cache_dir, plan, run.work)
    run.summary["wrk"]["service_fastapi_routing"] = wrk_series(wrk, server, run.ids_file, plan, run.work)
    stop_server(server)


def auth_phase(run: Session) -> None:
    """The service again with API keys on: locust and wrk send a key; what the key check costs (keys off = before)."""
    plan, summary = run.plan, run.summary
    key = secrets.token_urlsafe(32)
    server = serve(run.stack, "service-keys", "service", run.cache_dir, plan, run.work, api_key=key)
    auth: dict[str, Any] = {"startup": server.ready}
    if plan.duration_s > 0:
        print(f"  keys on: locust {plan.users} users, {plan.duration_s} s ...", flush=True)
        auth["locust"] = run_locust(server, run.fixture, plan, plan.duration_s, plan.out / "keys_locust", run.work)
    if run.wrk:
        auth["wrk"] = wrk_series(run.wrk, server, run.ids_file, plan, run.work)
        off = summary.get("wrk", {}).get("service", {})
        auth["wrk_rps_ratio_keys_on_to_off"] = {
            c: round(r["rps"] / off[c]["rps"], 3) for c, r in auth["wrk"].items() if off.get(c, {}).get("rps")
        }
    summary["keys_on"] = auth
    stop_server(server)


def main(argv: list[str] | None = None) -> int:
    """Run every phase, always stop what was started, write the report; exit code 0 when it completed."""
    plan = make_plan(parse_args(argv))
    signal.signal(signal.SIGTERM, raise_interrupt)
    work = Path(tempfile.mkdtemp(prefix="loadtest-"))
    clean_outputs(plan.out)
    summary: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds")}
    from recsys.cache.build import cache_facts
    from recsys.cache.stage import open_or_build

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
            summary["fixture"] = {
                "known_ids": len(fx["known_ids"]),
                "unknown_ids": len(fx["unknown_ids"]),
                "exclusion_products": len(fx["exclusion"]),
                "exclusion_customers": sum(len(v) for v in fx["exclusion"].values()),
                "exclusion_skipped": fx["exclusion_skipped"],
            }
            summary["machine"] = machine_facts(load)
            summary["run"] = {
                "workers": plan.workers,
                "users": plan.users,
                "spawn_rate": plan.spawn_rate,
                "duration_s": plan.duration_s,
                "wrk_duration_s": plan.wrk_duration_s,
                "wrk_connections": list(plan.wrk_connections),
                "soak_s": plan.soak_s,
                "tiny": plan.tiny,
                "think_time_s": plan.wait,
                "locust_processes": plan.locust_processes,
                "fast_lane": plan.fast_lane,
                "keys_phase": plan.keys,
                "uvicorn": uvicorn_implementation(service_env(cache_dir, 1, workers=plan.workers)),
            }
            summary["comparable_with_original"] = (
                not plan.tiny
                and plan.workers == 2
                and plan.users == 1000
                and plan.duration_s >= 60
                and plan.wrk_duration_s >= 30
            )
            wrk, why = (None, "skipped (--skip-wrk)") if plan.skip_wrk else ensure_wrk()
            summary["wrk_status"] = why
            if wrk is None and not plan.skip_wrk:
                print(f"wrk unavailable: {why}; continuing without the wrk runs", file=sys.stderr)
            session = Session(stack, plan, cache_dir, fixture, ids_file, wrk, work, summary)
            service_phase(session)
            if plan.keys:
                auth_phase(session)
            if wrk:
                trivial_phase(session, wrk)
                if plan.fast_lane:
                    routing_phase(session, wrk)
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
            plot_history(
                plan.out / "soak_stats_history.csv",
                plan.out / "soak_history.png",
                f"soak {summary['soak']['duration_s']} s: {label}",
                summary["soak"].get("memory_samples"),
            )
        if ok and summary.get("comparable_with_original") and plan.out == OUT_DIR:  # only full runs of record
            readme = config.PROJ_ROOT / "README.md"
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
