"""Serve with uvicorn's own server in worker processes, each listening on its own SO_REUSEPORT socket.

Every worker binds a listening socket with SO_REUSEPORT to the service's address and hands it to
``uvicorn.Server(config).run(sockets=[sock])`` (uvicorn's public API); the kernel hashes new
connections over the workers' own accept queues. (One listening socket shared by the workers is
unfair with batched accepts: the worker that wakes first takes the whole burst, all of wrk's 100
connections once; issue #8.) The event loop is ``service.loop`` (uvloop with batched accept; why
there). A single worker runs the same way in this process.

``Supervisor`` is the parent process with several workers: it holds the address (an SO_REUSEPORT
socket that never listens, so a port already in use fails at start), starts the workers with
multiprocessing's spawn context, replaces a worker that dies (with back-off, ``Backoff``), forwards
SIGHUP (every worker then re-reads the cache at once) and stops them all on SIGINT/SIGTERM.

A killed worker loses only what it held: the requests in flight on its connections and the connections
queued on its own listening socket (the kernel resets them when the socket closes). New connections go to
the surviving workers' sockets at once (a listener that is gone is out of the SO_REUSEPORT group), and the
replacement joins the group when its server starts listening, after the cache is open. A worker that keeps
dying is restarted after 0.5 s, 1 s, 2 s ... up to 30 s (a crash loop cannot burn the CPU); a worker that
served for a minute resets its slot's delay.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from service.loop import loop_name

logger = logging.getLogger("recsys.service")

LOOP = "service.loop:new_event_loop"  # uvicorn's custom loop-factory setting
STOP_TIMEOUT_S = 15.0
RESTART_DELAYS_S = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # by consecutive failures of one worker slot
STABLE_AFTER_S = 60.0  # a worker that ran this long resets its slot's back-off


@dataclass
class Backoff:
    """Restart delays of one worker slot: the first restart is immediate, then they double up to the last delay."""

    delays: tuple[float, ...] = RESTART_DELAYS_S
    stable_after_s: float = STABLE_AFTER_S
    failures: int = 0

    def next_delay(self, ran_s: float) -> float:
        """The delay before restarting a worker that died after running `ran_s` seconds."""
        if ran_s >= self.stable_after_s:
            self.failures = 0
        delay = self.delays[min(self.failures, len(self.delays) - 1)]
        self.failures += 1
        return delay


def listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT and TCP_NODELAY (accepted connections inherit it).

    Without it, on asyncio (no uvloop) a response written in two pieces waits for the client's delayed
    ACK (~40 ms, issue #8): asyncio disables Nagle only on sockets created with IPPROTO_TCP.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serving_layout() -> dict[str, str]:
    """The event loop (`LOOP`) and the socket layout of the servers on this machine (for reports)."""
    return {"loop": loop_name(), "listeners": "one SO_REUSEPORT socket per worker"}


def serve_one(config: uvicorn.Config) -> bool:
    """Run uvicorn's server (loop: `LOOP`) here on its own listening socket; False if it failed to start."""
    sock = listener(config.host, config.port)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return server.started


def worker_main(config: uvicorn.Config) -> None:
    """Entry point of a spawned worker: configure logging again (a new interpreter), then serve."""
    config.configure_logging()
    if not serve_one(config):
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    """Keep `config.workers` worker processes serving `config.host:config.port`; stop them all on SIGINT/SIGTERM."""

    def __init__(self, config: uvicorn.Config) -> None:
        """Nothing runs until `run`."""
        self.config = config
        self.workers: list[SpawnProcess | None] = []
        self.restarts = 0
        self._started_at: list[float] = []
        self._backoff: list[Backoff] = []
        self._due: dict[int, float] = {}  # slot -> monotonic time of its scheduled restart
        self._stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")

    def _spawn(self) -> SpawnProcess:
        """Start one worker process."""
        process = self._context.Process(target=worker_main, args=(self.config,), name="recsys-service-worker")
        process.start()
        return process

    def _start_slot(self, slot: int) -> None:
        """Start the worker of `slot` now."""
        self.workers[slot] = self._spawn()
        self._started_at[slot] = time.monotonic()

    def _reap(self, slot: int, process: SpawnProcess) -> bool:
        """Handle a worker that exited: schedule its restart with back-off; False when it could not start at all."""
        if process.exitcode == STARTUP_FAILURE:
            logger.error("worker %s could not start; stopping", process.pid)
            return False
        ran = time.monotonic() - self._started_at[slot]
        delay = self._backoff[slot].next_delay(ran)
        self.workers[slot] = None
        self._due[slot] = time.monotonic() + delay
        self.restarts += 1
        logger.warning(
            "worker %s exited with %s after %.1f s; starting a new one in %.1f s (restart %d)",
            process.pid,
            process.exitcode,
            ran,
            delay,
            self.restarts,
        )
        return True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGINT/SIGTERM: stop; SIGHUP: every worker re-reads the cache now."""
        if signum == signal.SIGHUP:
            for process in self.workers:
                if process is not None and process.pid is not None and process.is_alive():
                    os.kill(process.pid, signal.SIGHUP)
            return
        self._stop.set()

    def run(self) -> int:
        """Serve until a stop signal; 0 after a clean stop, STARTUP_FAILURE when a worker could not start."""
        holder = listener(self.config.host, self.config.port)  # reserves the address; fails now if it is taken
        handled = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        logger.info(
            "serving on http://%s:%d with %d workers (one SO_REUSEPORT listener each)",
            host,
            self.config.port,
            self.config.workers,
        )
        code = 0
        try:
            count = self.config.workers
            self.workers, self._started_at = [None] * count, [0.0] * count
            self._backoff = [Backoff() for _ in range(count)]
            for slot in range(count):
                self._start_slot(slot)
            while not self._stop.is_set():
                now = time.monotonic()
                timeout = min([0.5, *[max(0.0, due - now) for due in self._due.values()]])
                multiprocessing.connection.wait([p.sentinel for p in self.workers if p is not None], timeout=timeout)
                for slot, process in enumerate(self.workers):
                    if self._stop.is_set():
                        break
                    if process is not None and not process.is_alive() and not self._reap(slot, process):
                        code = STARTUP_FAILURE
                        self._stop.set()
                for slot, due in list(self._due.items()):
                    if not self._stop.is_set() and time.monotonic() >= due:
                        del self._due[slot]
                        self._start_slot(slot)
        finally:
            self._stop_workers()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            holder.close()
        return code

    def _stop_workers(self) -> None:
        """SIGTERM every worker (uvicorn shuts down gracefully), then SIGKILL those still running after the timeout."""
        running = [p for p in self.workers if p is not None]
        for process in running:
            if process.is_alive():
                process.terminate()
        for process in running:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
