"""What one load-test run does: command-line options resolved into a `Plan` (the issue's scenario, or --tiny)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys import config

LOADTEST_DIR = Path(__file__).resolve().parent
LOCUSTFILE = LOADTEST_DIR / "locustfile.py"
WRK_SCRIPT = LOADTEST_DIR / "wrk_random.lua"
OUT_DIR = config.REPORTS_DIR / "loadtest"
DESCRIPTION = "Load-test the audience service and write the performance report to reports/loadtest/."


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
    keys: bool = True  # also run the service with API keys on (locust + wrk send a key): keys on vs off


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(prog="python -m loadtest.run", description=DESCRIPTION)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers (RECSYS_WORKERS), default 2")
    ap.add_argument(
        "--no-fast-lane",
        action="store_true",
        help="serve every request through FastAPI routing (RECSYS_FAST_LANE=false), for comparison",
    )
    ap.add_argument(
        "--no-keys-phase",
        action="store_true",
        help="skip the extra phase with API keys on (RECSYS_API_KEYS; locust and wrk send the key)",
    )
    ap.add_argument("--users", type=int, default=None, help="locust users (default 1000; tiny 10)")
    ap.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default 50)")
    ap.add_argument("--duration", type=int, default=None, help="locust run time in s (default 60; 0 = skip)")
    ap.add_argument("--wrk-duration", type=int, default=None, help="each wrk run in s (default 30)")
    ap.add_argument("--skip-wrk", action="store_true", help="no wrk runs (service nor trivial app)")
    ap.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="SECONDS",
        help="extra locust soak run of this length with RSS sampling (5 minutes = --soak 300)",
    )
    ap.add_argument("--tiny", action="store_true", help="seconds-long smoke run on a tiny cache in a temp dir")
    ap.add_argument(
        "--locust-processes",
        type=int,
        default=None,
        help="locust --processes (default 2: one process saturates a core and then measures itself; tiny 1 = no fork)",
    )
    ap.add_argument("--wait", default=None, help='user think time "min,max" s (default "0.1,0.3")')
    ap.add_argument("--out", type=Path, default=None, help=f"output directory (default {OUT_DIR})")
    ap.add_argument("--cache-dir", type=Path, default=None, help="cache to serve (default data/artifacts/cache)")
    ap.add_argument(
        "--max-load-wait",
        type=float,
        default=None,
        help="seconds to wait for other jobs to leave the CPU before starting (default 300; tiny 0)",
    )
    ap.add_argument(
        "--phase-wait",
        type=float,
        default=None,
        help="seconds each locust/wrk phase may wait for other jobs to leave the CPU (default 120; tiny 0)",
    )
    ap.add_argument(
        "--busy-threshold",
        type=float,
        default=15.0,
        help="machine CPU %% (all cores = 100) used by others below which the machine counts as quiet",
    )
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
        keys=not args.no_keys_phase,
    )
