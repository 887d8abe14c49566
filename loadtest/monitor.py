"""The machine while load runs: quiet-machine wait, load average, CPU per process group, worker memory."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil

MB = 1024 * 1024


def loadavg() -> list[float]:
    """1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_quiet(max_wait_s: float, busy_pct: float) -> dict[str, Any]:
    """Wait (at most `max_wait_s`) until other processes use <= busy_pct % of the machine over 5 s; report it."""
    before = loadavg()
    t0 = time.monotonic()
    busy = psutil.cpu_percent(interval=1.0 if max_wait_s <= 0 else 5.0)
    if busy > busy_pct and max_wait_s > 0:
        print(
            f"  machine CPU {busy} % (others): waiting up to {max_wait_s:.0f} s for it to drop below {busy_pct} %",
            flush=True,
        )
    while busy > busy_pct and time.monotonic() - t0 < max_wait_s:
        busy = psutil.cpu_percent(interval=5.0)
    return {
        "loadavg_before_wait": before,
        "waited_s": round(time.monotonic() - t0, 1),
        "loadavg_at_start": loadavg(),
        "machine_cpu_pct_at_start": busy,
        "busy_threshold_pct": busy_pct,
        "quiet": busy <= busy_pct,
    }


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_facts(load: dict[str, Any]) -> dict[str, Any]:
    """Cores, memory, versions and the load average seen at start."""
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load": load,
        "versions": {
            name: package_version(name)
            for name in ("uvicorn", "fastapi", "starlette", "locust", "uvloop", "httptools", "orjson")
        },
    }


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

        def kb(name: str, fields: dict[str, str] = fields) -> float:
            return round(int(fields.get(name, "0 kB").split()[0]) / 1024, 1)

        out.append(
            {
                "pid": p.pid,
                "rss_mb": round(info.rss / MB, 1),
                "rss_anon_mb": kb("RssAnon"),
                "rss_file_mb": kb("RssFile"),
                "pss_mb": round(info.pss / MB, 1),
                "uss_mb": round(info.uss / MB, 1),
            }
        )
    return out


def cpu_total(times: Any) -> float:
    """All CPU time in a psutil cpu_times() tuple (guest time is already inside user/nice on Linux)."""
    return float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


class Sampler(threading.Thread):
    """Every `interval` s: CPU % of each process group, machine CPU %, and (optionally) worker memory."""

    def __init__(
        self,
        groups: dict[str, Callable[[], list[psutil.Process]]],
        interval: float,
        memory_of: Callable[[], list[psutil.Process]] | None = None,
    ) -> None:
        """Remember what to sample; call start() and later stop()."""
        super().__init__(daemon=True)
        self.groups = groups
        self.interval = interval
        self.memory_of = memory_of
        self.samples: list[dict[str, Any]] = []
        self._known: dict[int, psutil.Process] = {}
        self._halt = threading.Event()
        self._t0 = time.monotonic()
        self._last_times = psutil.cpu_times()

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
            sample: dict[str, Any] = {
                "t": round(time.monotonic() - self._t0, 2),
                "machine_cpu": self._machine(),
                "cpu": {name: round(sum(v.values()), 1) for name, v in per_pid.items()},
                "cpu_per_pid": per_pid,
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
            if self.memory_of is not None:
                sample["memory"] = worker_memory(self.memory_of())
            self.samples.append(sample)

    def stop(self) -> list[dict[str, Any]]:
        """Stop sampling and return the samples."""
        self._halt.set()
        self.join(timeout=30)
        return self.samples


@contextlib.contextmanager
def sampling(
    groups: dict[str, Callable[[], list[psutil.Process]]],
    interval: float,
    memory_of: Callable[[], list[psutil.Process]] | None = None,
) -> Iterator[Sampler]:
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
        round(float(np.mean([s["cpu_per_pid"]["service"].get(pid, 0.0) for s in samples])), 1) for pid in workers
    ]
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
