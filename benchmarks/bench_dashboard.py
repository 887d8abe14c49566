"""First render and kernel memory of the Voilà dashboard in Debian chromium; writes reports/benchmarks/dashboard.json.

    nice -n 10 .venv/bin/python benchmarks/bench_dashboard.py --visits 3          # default artifacts (after make run)
    .venv/bin/python benchmarks/bench_dashboard.py --tiny --visits 2 --no-write     # check the script at small scale

What is measured, per visit (a new browser tab, hence a new kernel, on one running Voilà server started exactly as
``python -m dashboard`` starts it, ``dashboard.serve.voila_command``):

- ``first_render_s``: from the browser's navigation start (``performance.timeOrigin``: before the first request
  leaves) to the first moment the opening audience table (``.recsys-audience tr.recsys-row``) is in the page and
  visible, stamped inside the page by a MutationObserver installed before any page script runs (no polling delay);
  ``html_s`` is when the server's HTML response ended (the rest is widgets and kernel work);
- ``kernel_rss_mib`` / ``kernel_uss_mib``: resident and private memory of the tab's own kernel (the one the page
  connected to) once it is idle (after the notebook's background warm-ups end); ``kernels`` and ``total_rss_mib``:
  how many kernels the server holds then and their RSS with the Voilà server's. RSS counts the memory-mapped cache
  pages a kernel touched (shared between kernels); USS is what a kernel holds alone.

Visit 0 opens right after the server first answers (``--settle 0`` by default: the cold start a first user
meets); later visits open ``--gap`` seconds after the previous one rendered (a running server: with preheated
kernels, the pool has refilled). Timings are wall clock on a shared machine: the load average is recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import statistics
import subprocess  # nosec B404 # starts the Voilà server as a child process
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from _report import emit

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
USABLE = ".recsys-audience tr.recsys-row"
TARGET_S = 3.0
MIB = 1024 * 1024
KERNEL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STAMP_JS = (
    """
(() => {
  window.__recsysBench = {};
  const check = () => {
    const row = document.querySelector(USABLE);
    if (row && row.offsetParent !== null && !window.__recsysBench.usable) {
      window.__recsysBench.usable = performance.now();
    }
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true});
})();
"""
).replace("USABLE", repr(USABLE))


def tiny_artifacts(root: Path) -> dict[str, str]:
    """A tiny generated log, prepared and cached with the pipeline's functions; the env that points Voilà at it."""
    from dashboard.settings import DATA_ENV, REPORTS_ENV, DashboardPaths
    from recsys import config
    from recsys.cache.stage import build_cache_from_params
    from recsys.data.contract import source_spec_from_params
    from recsys.data.prepare import prepare
    from recsys.data.synthetic import generate

    env = {DATA_ENV: str(root / "data"), REPORTS_ENV: str(root / "reports")}
    paths = DashboardPaths.from_env(env)
    raw = root / "data" / "raw" / "synthetic.csv"
    generate(raw, scale=0.01, seed=42)
    prepare(raw, paths.prepared, source_spec_from_params(config.dataset_config(config.DEFAULT_DATASET)["source"]))
    build_cache_from_params(prepared_path=paths.prepared, cache_dir=paths.cache_dir)
    return env


def kernels(server: int) -> list[psutil.Process]:
    """The Jupyter kernel processes of the Voilà server `server`."""
    from service.processes import descendants

    return [p for p in descendants(server) if "ipykernel" in " ".join(p.cmdline())]


def wait_idle(procs: list[psutil.Process], quiet_pct: float = 5.0, timeout_s: float = 120.0) -> float:
    """Wait until every process uses under `quiet_pct` % of a core over a second; the seconds it took."""
    t0 = time.perf_counter()
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    while time.perf_counter() - t0 < timeout_s:
        time.sleep(1.0)
        busy = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                busy = max(busy, p.cpu_percent(None))
        if busy < quiet_pct:
            break
    return round(time.perf_counter() - t0, 1)


def own_kernel(server: int, kernel_id: str | None) -> psutil.Process | None:
    """The kernel process a tab talks to (its connection file names the kernel id the page connected to)."""
    if kernel_id is None:
        return None
    return next((p for p in kernels(server) if kernel_id in " ".join(p.cmdline())), None)


def memory(server: int, own: psutil.Process | None) -> dict[str, Any]:
    """RSS / USS of the tab's own kernel, the number of kernels and the total RSS of the server with them (MiB)."""
    rss = uss = None
    if own is not None:
        with contextlib.suppress(psutil.Error):
            full = own.memory_full_info()
            rss, uss = round(full.rss / MIB, 1), round(full.uss / MIB, 1)
    family = kernels(server)
    total = psutil.Process(server).memory_info().rss
    for p in family:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    total_mib = round(total / MIB, 1)
    return {"kernel_rss_mib": rss, "kernel_uss_mib": uss, "kernels": len(family), "total_rss_mib": total_mib}


@contextlib.contextmanager
def voila_server(env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The dashboard served as `python -m dashboard` serves it, on a free 127.0.0.1 port; stopped afterwards."""
    from dashboard.serve import voila_command
    from recsys import config
    from service.processes import free_port, port_open, stop_process_tree, wait_until

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # nosec B603 # argv from dashboard.serve.voila_command, no shell
            voila_command(port), cwd=config.PROJ_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), "voila to listen", timeout_s=300, proc=proc, interval_s=0.1)
        yield proc, url
    finally:
        stop_process_tree(proc)


def visit(browser: Any, url: str, timeout_s: float) -> tuple[Any, dict[str, float]]:
    """Open `url` in a new tab and time it to the first usable render; the open page and its timings (s)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.add_init_script(STAMP_JS)
    page.set_default_timeout(timeout_s * 1000)
    page.goto(url, wait_until="commit")
    page.wait_for_function("() => window.__recsysBench && window.__recsysBench.usable")
    stamps = page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " const k = performance.getEntriesByType('resource').map(e => e.name).find(u => u.includes('/api/kernels/'));"
        " return {usable: window.__recsysBench.usable, html: n.responseEnd, request: n.requestStart, kernel: k}; }"
    )
    kernel = KERNEL_ID.search(stamps["kernel"] or "")
    return page, {
        "first_render_s": round(stamps["usable"] / 1000, 3),
        "html_s": round(stamps["html"] / 1000, 3),
        "request_start_s": round(stamps["request"] / 1000, 3),
        "kernel_id": kernel.group(0) if kernel else None,
    }


README_START = (
    "<!-- dashboard-benchmark:start (generated by benchmarks/bench_dashboard.py from "
    "reports/benchmarks/dashboard.json) -->"
)
README_END = "<!-- dashboard-benchmark:end -->"


def readme_text(report: dict[str, Any]) -> str:
    """The README's sentences on first render and kernel memory, from the benchmark's report."""
    fr = report["first_render_s"]
    visits = len(report["visits"])
    pool = "--preheat_kernel=True" in report["voila_options"]
    spare = (
        " With Voilà's preheated pool one more kernel, already past the notebook, waits for the next visitor, so a "
        "server with T tabs open holds T + 1 kernels."
        if pool
        else ""
    )
    return (
        f"Measured {report['created_at'][:10]} on {report['machine']['cpus']} cores (load average "
        f"{report['machine']['load_avg_1m']:.1f}) over the default artifacts: the first usable render (from the "
        f"browser's navigation start to the audience table on screen) takes **{fr['running_server_median']:.1f} s** "
        f"on a running server (median of {max(visits - 1, 1)} visits, at most {fr['running_server_max']:.1f} s; "
        f"target ≤ {report['target_first_render_s']:.0f} s) and {fr['server_start_visit']:.1f} s for a visit the "
        f"moment the server starts. Each open tab holds one kernel of **{report['kernel_rss_mib_per_tab']:,.0f} MiB** "
        f"resident ({report['kernel_uss_mib_per_tab']:,.0f} MiB of it private; the rest, libraries and the "
        f"memory-mapped cache, is shared with other processes).{spare}"
    )


def main(argv: list[str] | None = None) -> int:
    """Serve the dashboard, open it `--visits` times in Debian chromium, write the timings and memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=3, help="tabs opened one after another (>= 1)")
    parser.add_argument("--gap", type=float, default=20.0, help="seconds between a render and the next visit")
    parser.add_argument("--settle", type=float, default=0.0, help="seconds between server ready and visit 0")
    parser.add_argument("--tiny", action="store_true", help="tiny generated artifacts in a temporary directory")
    parser.add_argument("--label", default="", help="a note stored with the figures (e.g. 'before')")
    parser.add_argument("--output", type=Path, help="JSON path (default reports/benchmarks/dashboard.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--render", action="store_true", help="only rewrite the README block from the JSON")
    args = parser.parse_args(argv)
    if args.render:
        import json

        from recsys import config
        from recsys.reporting.readme import replace_block

        saved = json.loads((args.output or config.REPORTS_DIR / "benchmarks" / "dashboard.json").read_text())
        replace_block(config.PROJ_ROOT / "README.md", README_START, README_END, readme_text(saved))
        return 0
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: run scripts/ensure_deb.sh /usr/bin/chromium chromium fonts-dejavu-core")
    from playwright.sync_api import sync_playwright

    from dashboard.serve import voila_command
    from dashboard.settings import DATA_ENV, REPORTS_ENV

    env = {k: v for k, v in os.environ.items() if k not in (DATA_ENV, REPORTS_ENV)}
    env["OPENBLAS_NUM_THREADS"] = "1"
    visits: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        root = Path(tmp)
        if args.tiny:
            env.update(tiny_artifacts(root))
        with voila_server(env, root / "voila.log") as (proc, url), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                time.sleep(args.settle)
                pages = []
                for i in range(max(1, args.visits)):
                    if i:
                        time.sleep(args.gap)
                    page, timing = visit(browser, url, timeout_s=300)
                    pages.append(page)
                    own = own_kernel(proc.pid, timing["kernel_id"])
                    idle_s = wait_idle([own] if own is not None else kernels(proc.pid))
                    visits.append({"visit": i, **timing, "idle_after_s": idle_s, **memory(proc.pid, own)})
                    print(visits[-1], file=sys.stderr, flush=True)
            finally:
                browser.close()
    steady = [v["first_render_s"] for v in visits[1:]] or [visits[0]["first_render_s"]]
    rss = [v["kernel_rss_mib"] for v in visits if v["kernel_rss_mib"] is not None]
    uss = [v["kernel_uss_mib"] for v in visits if v["kernel_uss_mib"] is not None]
    report: dict[str, Any] = {
        "benchmark": "dashboard",
        "label": args.label,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "artifacts": "tiny (generated, scale 0.01)" if args.tiny else "default (make run)",
        "voila_options": [a for a in voila_command(0)[4:] if not a.startswith("--port")],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]},
        "target_first_render_s": TARGET_S,
        "first_render_s": {
            "server_start_visit": visits[0]["first_render_s"],
            "running_server_median": round(statistics.median(steady), 3),
            "running_server_max": max(steady),
        },
        "kernel_rss_mib_per_tab": round(statistics.median(rss), 1) if rss else None,
        "kernel_uss_mib_per_tab": round(statistics.median(uss), 1) if uss else None,
        "visits": visits,
    }
    emit(report, "dashboard", args.output, write=not args.no_write)
    if not args.no_write and not args.tiny and args.output is None:
        from recsys import config
        from recsys.reporting.readme import replace_block

        replace_block(config.PROJ_ROOT / "README.md", README_START, README_END, readme_text(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
