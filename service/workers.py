"""Serve with uvicorn's own server in worker processes, each listening on its own SO_REUSEPORT socket.

Every worker binds a listening socket with SO_REUSEPORT to the service's address and hands it to
``uvicorn.Server(config).run(sockets=[sock])`` (uvicorn's public API); the kernel hashes new
connections over the workers' own accept queues. (One listening socket shared by the workers is
unfair with batched accepts: the worker that wakes first takes the whole burst, all of wrk's 100
connections once; issue #8.) The event loop is ``service.loop`` (uvloop with batched accept; why
there). A single worker runs the same way in this process.

``Supervisor`` is the parent process with several workers: it holds the address (an SO_REUSEPORT
socket that never listens, so a port already in use fails at start), starts the workers with
multiprocessing's spawn context, replaces a worker that dies, forwards SIGHUP (every worker then
re-reads the cache at once) and stops them all on SIGINT/SIGTERM.
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
from multiprocessing.context import SpawnProcess
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from service.loop import loop_name

logger = logging.getLogger("recsys.service")

LOOP = "service.loop:new_event_loop"  # uvicorn's custom loop-factory setting
STOP_TIMEOUT_S = 15.0


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
        self.workers: list[SpawnProcess] = []
        self._stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")

    def _spawn(self) -> SpawnProcess:
        """Start one worker process."""
        process = self._context.Process(target=worker_main, args=(self.config,), name="recsys-service-worker")
        process.start()
        return process

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGINT/SIGTERM: stop; SIGHUP: every worker re-reads the cache now."""
        if signum == signal.SIGHUP:
            for process in self.workers:
                if process.pid is not None and process.is_alive():
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
            self.workers = [self._spawn() for _ in range(self.config.workers)]
            while not self._stop.is_set():
                multiprocessing.connection.wait([p.sentinel for p in self.workers], timeout=0.5)
                for i, process in enumerate(self.workers):
                    if process.is_alive() or self._stop.is_set():
                        continue
                    if process.exitcode == STARTUP_FAILURE:
                        logger.error("worker %s could not start; stopping", process.pid)
                        code = STARTUP_FAILURE
                        self._stop.set()
                        break
                    logger.warning("worker %s exited with %s; starting a new one", process.pid, process.exitcode)
                    self.workers[i] = self._spawn()
        finally:
            self._stop_workers()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            holder.close()
        return code

    def _stop_workers(self) -> None:
        """SIGTERM every worker (uvicorn shuts down gracefully), then SIGKILL those still running after the timeout."""
        for process in self.workers:
            if process.is_alive():
                process.terminate()
        for process in self.workers:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
