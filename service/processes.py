"""Start, probe and stop local server processes: the one copy used by the tests, the benchmarks and the load test.

Everything here talks to 127.0.0.1 only and uses the standard library plus psutil (no HTTP client
library: probes use ``urllib``), so any of those callers can import it without the service's own
dependencies. It lives in ``service`` because every caller starts or probes a server like
``python -m service`` (the service, the load test's trivial app, Voilà), and the core ``recsys``
package stays free of process plumbing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess  # nosec B404 # the one place that starts local servers for tests, benchmarks, load test
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import psutil

from recsys.config import PROJ_ROOT

HOST = "127.0.0.1"


class ProcessExitedError(RuntimeError):
    """A process we were waiting on exited first."""


def free_port(host: str = HOST) -> int:
    """A currently free TCP port on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when GET `url` answers 200 on a fresh connection."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"http_ok probes http(s) URLs only, got {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # nosec B310 # scheme checked above
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def service_env(
    cache_dir: Path | str,
    port: int,
    *,
    workers: int = 1,
    log_level: str = "warning",
    **extra: str,
) -> dict[str, str]:
    """Environment for `python -m service` on 127.0.0.1:`port`: ours, with every RECSYS_* but RECSYS_ROOT replaced."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_") or k == "RECSYS_ROOT"}
    env.update(
        {
            "RECSYS_CACHE_DIR": str(cache_dir),
            "RECSYS_HOST": HOST,
            "RECSYS_PORT": str(port),
            "RECSYS_WORKERS": str(workers),
            "RECSYS_LOG_LEVEL": log_level,
            **extra,
        }
    )
    return env


def start_module(
    module: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    text: bool = False,
) -> subprocess.Popen[Any]:
    """`python -m module args` from the project root in its own session (so its whole group can be stopped)."""
    return subprocess.Popen(  # nosec B603 # python -m <module> with arguments from our callers, no shell
        [sys.executable, "-m", module, *args],
        cwd=PROJ_ROOT,
        env=dict(env or os.environ),
        stdout=stdout,
        stderr=stderr,
        text=text,
        start_new_session=True,
    )


def wait_until(
    predicate: Callable[[], bool],
    what: str,
    *,
    timeout_s: float,
    proc: subprocess.Popen[Any] | None = None,
    interval_s: float = 0.05,
    describe_exit: Callable[[], str] | None = None,
) -> float:
    """Poll `predicate` until true and return the seconds it took; raise if `proc` exits or `timeout_s` passes."""
    t0 = time.perf_counter()
    while True:
        if predicate():
            return time.perf_counter() - t0
        if proc is not None and proc.poll() is not None:
            detail = describe_exit() if describe_exit is not None else ""
            raise ProcessExitedError(
                f"process exited with {proc.returncode} while waiting for {what}{': ' + detail if detail else ''}"
            )
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of `pid` (empty when it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def server_workers(pid: int, workers: int) -> list[psutil.Process]:
    """The processes of server `pid` that serve requests: itself with one worker, else its worker children.

    multiprocessing's resource tracker, also a child of a supervisor that spawns its workers, is left out.
    """
    try:
        parent = psutil.Process(pid)
        if workers == 1:
            return [parent]
        return [c for c in parent.children() if "resource_tracker" not in " ".join(c.cmdline())]
    except psutil.Error:
        return []


def stop_process_tree(proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> int:
    """SIGTERM `proc` (servers stop their own workers), wait; then SIGKILL it and any descendant still alive.

    Descendants are listed before the signal, as psutil.Process objects that check their creation time,
    so a recycled pid is never hit. Returns the process's exit code.
    """
    family = descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
    alive = [p for p in family if p.is_running()]
    for p in alive:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(alive, timeout=10)
    for p in still:
        try:
            p.kill()
        except psutil.Error:
            pass
    return int(proc.returncode)


def run_bounded(
    cmd: list[str], env: Mapping[str, str], timeout_s: float, log: Path, on_start: Callable[[int], None] | None = None
) -> int:
    """Run `cmd` from the project root in its own session, output to `log`; stop its tree on overrun or Ctrl-C."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(  # nosec B603 # argv from our callers (benchmarks, load test), no shell
            cmd, cwd=PROJ_ROOT, env=dict(env), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        if on_start is not None:
            on_start(proc.pid)
        try:
            return proc.wait(timeout=timeout_s)
        except BaseException:
            stop_process_tree(proc, timeout_s=15.0)
            raise
