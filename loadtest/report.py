"""summary.md and the charts: the comparison table, CPU per phase, caveats, req/s and latency over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.locust_run import num, read_csv_rows
from loadtest.plan import Plan
from loadtest.targets import ORIGINAL, TARGETS


def phases(s: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, result) of every load phase that ran, in order."""
    out = [(label, s[key]) for key, label in (("locust", "locust"), ("soak", "soak")) if s.get(key)]
    for app, label in (
        ("service", "service"),
        ("trivial", "trivial"),
        ("service_fastapi_routing", "service, lane off"),
    ):
        for key, run in s.get("wrk", {}).get(app, {}).items():
            out.append((f"wrk {label} -{key}", run))
    keyed = s.get("keys_on") or {}
    if keyed.get("locust"):
        out.append(("locust, keys on", keyed["locust"]))
    for key, run in (keyed.get("wrk") or {}).items():
        out.append((f"wrk service, keys on -{key}", run))
    return out


def keys_rows(s: dict[str, Any]) -> list[str]:
    """Markdown lines comparing the service with API keys off and on (empty when the keys phase did not run)."""
    keyed = s.get("keys_on") or {}
    if not keyed:
        return []
    lines = [
        "",
        "API keys off vs on (the same service; with keys every request sends `Authorization: Bearer` and is checked):",
        "",
        "| run | keys off: req/s, p50 / p99 (ms) | keys on: req/s, p50 / p99 (ms) | on / off req/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    off_wrk = s.get("wrk", {}).get("service", {})
    for key, on in (keyed.get("wrk") or {}).items():
        off = off_wrk.get(key, {})
        lines.append(
            f"| wrk -{key} | {fmt(off.get('rps'))}, {fmt(off.get('latency_ms', {}).get('p50'))} / "
            f"{fmt(off.get('latency_ms', {}).get('p99'))} | {fmt(on.get('rps'))}, "
            f"{fmt(on['latency_ms'].get('p50'))} / {fmt(on['latency_ms'].get('p99'))} | "
            f"{fmt(keyed.get('wrk_rps_ratio_keys_on_to_off', {}).get(key), 3)} |"
        )
    loc_on, loc_off = keyed.get("locust"), s.get("locust")
    if loc_on and loc_off:
        on_lat, off_lat = loc_on.get("latency_ms", {}), loc_off.get("latency_ms", {})
        ratio = loc_on["rps"] / loc_off["rps"] if loc_off.get("rps") else None
        lines.append(
            f"| locust {loc_on.get('users', '')} users | {fmt(loc_off.get('rps'))}, {fmt(off_lat.get('p50'))} / "
            f"{fmt(off_lat.get('p99'))} | {fmt(loc_on.get('rps'))}, {fmt(on_lat.get('p50'))} / "
            f"{fmt(on_lat.get('p99'))} | {fmt(ratio, 3)} |"
        )
        lines.append(
            f"| locust failures / requests, keys on | | | {loc_on.get('failures')} / {loc_on.get('requests')} |"
        )
    return lines


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
        (
            "start-up to /health ready, all workers (s)",
            ORIGINAL["startup_s"],
            f"≤ {t['startup_s_max']}",
            s.get("startup", {}).get("all_workers_ready_s"),
            mark(v.get("startup_s")),
        ),
        (
            "max RSS per worker (MB)",
            ORIGINAL["rss_mb_per_worker"],
            f"≤ {t['rss_mb_per_worker_max']}",
            s.get("rss_max", {}).get("rss_mb"),
            mark(v.get("rss_mb_per_worker")),
        ),
        (
            "  … of which file-backed cache pages (MB) / PSS (MB)",
            None,
            "",
            f"{fmt(s.get('rss_max', {}).get('rss_file_mb'))} / {fmt(s.get('rss_max', {}).get('pss_mb'))}",
            "",
        ),
    ]
    wrk = s.get("wrk", {})
    for key, run in wrk.get("service", {}).items():
        label = f"wrk_{key}"
        orig, tt = ORIGINAL.get(label, {}), t.get(label, {})
        triv = wrk.get("trivial", {}).get(key, {})
        rows += [
            (
                f"wrk -t1 -{key} req/s",
                orig.get("rps"),
                f"≥ {tt['rps_min']:,.0f}" if tt else "",
                run["rps"],
                mark(v.get(f"{label}_rps")),
            ),
            (f"wrk -{key} p50 (ms)", orig.get("p50_ms"), "", run["latency_ms"]["p50"], ""),
            (
                f"wrk -{key} p99 (ms)",
                orig.get("p99_ms"),
                f"≤ {tt['p99_ms_max']}" if tt else "",
                run["latency_ms"]["p99"],
                mark(v.get(f"{label}_p99_ms")),
            ),
            (
                f"wrk -{key} socket timeouts / other errors",
                orig.get("timeouts"),
                "0" if "timeouts_max" in tt else "",
                f"{run['timeouts']} / {sum(x for k2, x in run['errors'].items() if k2 != 'timeout')}",
                mark(v.get(f"{label}_timeouts")),
            ),
            (
                f"wrk -{key} ratio to trivial FastAPI endpoint",
                None,
                f"≥ {t['ratio_to_trivial_min']}" if tt else "",
                wrk.get("ratio_to_trivial", {}).get(key),
                mark(v.get(f"{label}_ratio_to_trivial")),
            ),
            (
                f"  trivial endpoint -{key}: req/s, p50 / p99 (ms)",
                None,
                "",
                f"{fmt(triv.get('rps'))}, {fmt(triv.get('latency_ms', {}).get('p50'))} / "
                f"{fmt(triv.get('latency_ms', {}).get('p99'))}",
                "",
            ),
        ]
        routed = wrk.get("service_fastapi_routing", {}).get(key)
        if routed:
            rows.append(
                (
                    f"  service with the fast lane off -{key}: req/s, p50 / p99 (ms), timeouts",
                    None,
                    "",
                    f"{fmt(routed.get('rps'))}, {fmt(routed['latency_ms'].get('p50'))} / "
                    f"{fmt(routed['latency_ms'].get('p99'))}, {routed.get('timeouts')}",
                    "",
                )
            )
    loc = s.get("locust")
    if loc:
        o = ORIGINAL["locust"]
        rows += [
            (
                f"locust {loc['users']:,} users req/s (whole run / steady)",
                o["rps"],
                "",
                f"{fmt(loc['rps'])} / {fmt(loc['rps_steady'])}",
                "",
            ),
            ("locust p50 (ms)", o["p50_ms"], "", loc["latency_ms"]["p50"], ""),
            (
                "locust p99 (ms)",
                o["p99_ms"],
                f"≤ {t['locust']['p99_ms_max']}",
                loc["latency_ms"]["p99"],
                mark(v.get("locust_p99_ms")),
            ),
            (
                "locust failures / requests",
                o["failures"],
                "0",
                f"{loc['failures']:,} / {loc['requests']:,}",
                mark(v.get("locust_failures")),
            ),
            (
                "locust duration (s)",
                None,
                f"≥ {t['locust']['duration_s_min']:.0f}",
                loc["duration_s"],
                mark(v.get("locust_duration_s")),
            ),
            ("locust CPU, mean (% of one core)", 100.0, "", loc["cpu"].get("locust_mean_pct"), ""),
        ]
    soak = s.get("soak")
    if soak and "growth" in soak:
        g = soak["growth"]
        rows += [
            (
                f"soak {soak['duration_s']} s: max RSS growth per worker (MB)",
                None,
                f"≤ {t['soak_rss_growth_mb_max']}",
                g.get("max_rss_growth_mb"),
                mark(v.get("soak_rss_growth_mb")),
            ),
            (
                "soak failures / requests",
                None,
                "0",
                f"{soak['failures']:,} / {soak['requests']:,}",
                mark(v.get("soak_failures")),
            ),
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
        lines.append(
            f"| {metric} | {fmt(orig)} | {target} | "
            f"{fmt(measured, 2 if isinstance(measured, float) and measured < 10 else 1)} | {ok} |"
        )
    lines += [
        "",
        f"CPU per phase (mean % of one core; the machine has {m['cores']} cores):",
        "",
        "| phase | service workers | load generator | other processes |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, phase in phases(s):
        cpu = phase.get("cpu", {})
        gen = cpu.get("locust_mean_pct", cpu.get("wrk_mean_pct"))
        lines.append(
            f"| {name} | {fmt(cpu.get('service_mean_pct'))} "
            f"({' + '.join(fmt(x) for x in cpu.get('service_per_worker_mean_pct', []))}) | {fmt(gen)} | "
            f"{fmt(cpu.get('rest_of_machine_mean_pct'))} |"
        )
    lines += keys_rows(s)
    if s.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in s["notes"]]
    return "\n".join(lines) + "\n"


def notes_for(summary: dict[str, Any], plan: Plan) -> list[str]:
    """Plain-language caveats that belong next to the numbers."""
    notes = []
    if summary["fixture"]["exclusion_skipped"]:
        notes.append(summary["fixture"]["exclusion_skipped"])
    else:
        notes.append(
            f"exclusion spot-check on {summary['fixture']['exclusion_products']} products "
            "(half the most-interacted, half random) against data/prepared/interactions.parquet"
        )
    if summary["run"]["uvicorn"]["http"] == "h11" or summary["run"]["uvicorn"]["loop"] == "asyncio":
        notes.append(
            "uvicorn runs with the pure-Python h11 parser and/or the asyncio loop: httptools and uvloop "
            "are not installed in this environment"
        )
    if not summary["machine"]["load"]["quiet"]:
        notes.append("the machine was not quiet at start (other jobs running): figures are lower than on an idle box")
    busy = [name for name, phase in phases(summary) if phase.get("cpu", {}).get("rest_of_machine_mean_pct", 0) > 25]
    if busy:
        notes.append(
            f"other processes took more than a quarter of a core during: {', '.join(busy)}; those figures "
            "understate what the service does on a quiet machine"
        )
    if not summary["comparable_with_original"]:
        notes.append("this run's scenario differs from the original's (users, duration, workers or wrk length)")
    for name, phase in phases(summary):
        split = phase.get("cpu", {}).get("service_per_worker_mean_pct", [])
        if len(split) > 1 and max(split) > 10 and min(split) < 0.5 * max(split):
            notes.append(
                f"{name}: connections were spread unevenly over the workers (worker CPU "
                f"{' / '.join(fmt(x) for x in split)} %): the kernel hashes connections (by client address "
                "and port) over the workers' own SO_REUSEPORT listeners, which evens out over many connections"
            )
    notes.append(
        "RSS counts the memory-mapped cache pages a worker has touched; those pages are shared by all "
        "workers through the page cache (PSS splits them)"
    )
    return notes


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
            ax.plot(
                [s["t"] for s in memory for m in s["memory"] if m["pid"] == pid],
                [m["rss_mb"] for s in memory for m in s["memory"] if m["pid"] == pid],
                label=f"worker {pid} RSS",
            )
            ax.plot(
                [s["t"] for s in memory for m in s["memory"] if m["pid"] == pid],
                [m["rss_anon_mb"] for s in memory for m in s["memory"] if m["pid"] == pid],
                linestyle="--",
                label=f"worker {pid} anonymous RSS",
            )
        ax.set_ylabel("MB")
        ax.legend(loc="lower right", fontsize=8)
    axes[-1].set_xlabel("seconds since locust start")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True
