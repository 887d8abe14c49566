"""service.workers: per-worker SO_REUSEPORT listeners under uvicorn's own server, and the supervisor around them."""

from __future__ import annotations

import errno
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.loop import loop_name
from service.processes import free_port, wait_until
from service.testing import build_tiny_cache, tiny_interactions
from service.workers import STABLE_AFTER_S, Backoff, listener, serving_layout

from conftest import SERVER_DEADLINE_S, RunningServer


def accept_all(sock: socket.socket) -> int:
    """Accept every connection waiting in `sock`'s queue; how many there were."""
    sock.setblocking(False)
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_listeners_share_one_address_and_the_kernel_spreads_connections_over_them() -> None:
    port = free_port()
    socks = [listener("127.0.0.1", port), listener("127.0.0.1", port)]
    clients: list[socket.socket] = []
    try:
        for s in socks:
            assert s.getsockname() == ("127.0.0.1", port)
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # accepted connections inherit it
            s.listen(128)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
        counts = [accept_all(s) for s in socks]
        assert sum(counts) == 64 and min(counts) > 0  # P(all 64 hashed onto one listener) = 2^-63
    finally:
        for c in clients:
            c.close()
        for s in socks:
            s.close()


def test_an_address_taken_without_reuseport_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen(8)
        with pytest.raises(OSError) as info:
            listener("127.0.0.1", plain.getsockname()[1])
        assert info.value.errno == errno.EADDRINUSE


def test_serving_layout_names_the_loop_and_the_listeners() -> None:
    layout = serving_layout()
    assert layout == {"loop": loop_name(), "listeners": "one SO_REUSEPORT socket per worker"}
    assert layout["loop"] in {"uvloop, batched accept", "asyncio"}


def health(base: str) -> Any:
    """One /health answer on a fresh connection (so the kernel may pick either worker)."""
    return httpx.get(f"{base}/health", timeout=5).json()


@pytest.mark.server
def test_sighup_reaches_every_worker(cache_dir: Path, start_service: Callable[..., RunningServer]) -> None:
    server = start_service(cache_dir, workers=2, RECSYS_RELOAD_INTERVAL_S="0")
    seen: dict[int, str] = {}

    def both_workers_on(version: str | None) -> bool:
        for _ in range(10):
            body = health(server.base)
            seen[int(body["pid"])] = str(body["cache"]["version"])
        return len(seen) == 2 and (version is None or set(seen.values()) == {version})

    wait_until(lambda: both_workers_on(None), "both workers to answer", timeout_s=SERVER_DEADLINE_S, proc=server.proc)
    new = build_tiny_cache(cache_dir, tiny_interactions(variant=1)).version
    server.proc.send_signal(signal.SIGHUP)  # polling is off: only the forwarded signal can reload them
    wait_until(
        lambda: both_workers_on(new),
        "every worker to serve the new version",
        timeout_s=SERVER_DEADLINE_S,
        proc=server.proc,
    )
    assert len(seen) == 2


@pytest.mark.server
def test_a_taken_port_stops_the_service_with_a_clear_message(
    cache_dir: Path, start_service: Callable[..., RunningServer]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen(8)
        taken = str(plain.getsockname()[1])
        for workers in (1, 2):
            proc = start_service(cache_dir, workers=workers, ready=False, RECSYS_PORT=taken).proc
            _, err = proc.communicate(timeout=SERVER_DEADLINE_S)
            assert proc.returncode != 0 and "cannot bind" in err and "Traceback" not in err, err


def test_backoff_doubles_for_a_crash_loop_and_resets_after_a_stable_run() -> None:
    backoff = Backoff()
    assert [backoff.next_delay(0.1) for _ in range(9)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.next_delay(STABLE_AFTER_S) == 0.0 and backoff.next_delay(1.0) == 0.5


@pytest.mark.server
def test_a_worker_killed_under_load_is_restarted_with_backoff_and_only_in_flight_requests_fail(
    cache_dir: Path, start_service: Callable[..., RunningServer]
) -> None:
    import os
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    clients = 6  # each has at most one request in flight: the bound on what a killed worker can take down
    server = start_service(cache_dir, workers=2, RECSYS_RELOAD_INTERVAL_S="0")
    wait_until(lambda: len({health(server.base)["pid"] for _ in range(10)}) == 2, "both workers", timeout_s=60)
    stop = threading.Event()

    def load() -> tuple[int, int]:
        ok = failed = 0
        with httpx.Client(base_url=server.base, timeout=10) as http:  # keep-alive: one connection at a time
            while not stop.is_set() and ok + failed < 200_000:
                try:
                    ok += http.get("/recommend/101").status_code == 200
                except httpx.HTTPError:
                    failed += 1
        return ok, failed

    def kill_one_worker() -> int:
        victim = int(health(server.base)["pid"])
        os.kill(victim, signal.SIGKILL)
        return victim

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(load) for _ in range(clients)]
        time.sleep(1.0)
        first = kill_one_worker()
        wait_until(
            lambda: len({health(server.base)["pid"] for _ in range(10)} - {first}) == 2,
            "the replacement worker to serve",
            timeout_s=SERVER_DEADLINE_S,
            proc=server.proc,
        )
        time.sleep(0.5)
        stop.set()
        results = [f.result() for f in futures]
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    assert ok > 100 and failed <= clients, (ok, failed)  # only what was in flight on the killed worker failed
    second = kill_one_worker()  # the same slot dies again at once: its restart now waits
    wait_until(
        lambda: len({health(server.base)["pid"] for _ in range(10)} - {first, second}) == 2,
        "the second replacement",
        timeout_s=SERVER_DEADLINE_S,
        proc=server.proc,
    )
    server.stop()
    assert server.proc.stderr is not None
    log = server.proc.stderr.read()
    assert f"worker {first} exited with -9" in log and f"worker {second} exited with -9" in log
    assert "starting a new one in 0.0 s (restart 1)" in log and "(restart 2)" in log
