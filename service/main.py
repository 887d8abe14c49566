"""Run the service under uvicorn with ServiceSettings: `python -m service` or `service.main.run(settings)`."""

from __future__ import annotations

import copy
import logging
import os
import socket
import sys
from typing import Any

import uvicorn
from pydantic import ValidationError
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from service.loop import per_worker_listeners
from service.settings import ServiceSettings
from service.state import CacheLoadError, open_snapshot

logger = logging.getLogger("recsys.service")

EXIT_BAD_CONFIG = 2
EXIT_NO_CACHE = 3
LOOP_FACTORY = "service.loop:new_event_loop"  # uvloop with batched accept (see service/loop.py)


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the `recsys` loggers on the same handler (applied in every worker)."""
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["recsys"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return cfg


def preflight(settings: ServiceSettings) -> None:
    """Open the cache once before uvicorn starts so a missing/corrupt cache fails fast with one clear line."""
    snapshot = open_snapshot(settings.cache_dir)
    logger.info("cache %s OK at %s (%d products, N=%d)", snapshot.version, settings.cache_dir,
                snapshot.product_count, snapshot.n)


def uvicorn_config(settings: ServiceSettings) -> uvicorn.Config:
    """The uvicorn Config for these settings (the app is built by the `service.app:create_app` factory)."""
    return uvicorn.Config(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=settings.access_log,
        lifespan="on",
        timeout_graceful_shutdown=10,
        loop=LOOP_FACTORY,
    )


def shared_socket(config: uvicorn.Config, reuse_port: bool = False) -> socket.socket:
    """The bound socket every server gets, with TCP_NODELAY so accepted connections inherit it.

    uvicorn binds it as ``socket.socket(AF_INET)`` (proto 0), and asyncio only disables Nagle on
    transports whose socket says IPPROTO_TCP: without this, h11 (headers and body are two writes)
    meets the client's delayed ACK and every keep-alive request waits ~40 ms (issue #8 load test).
    With `reuse_port` the socket is bound with SO_REUSEPORT and never listens itself: it holds the
    address, and each worker's `service.loop` server listens on its own SO_REUSEPORT socket bound to
    the same address, so the kernel spreads new connections evenly over the workers.
    """
    if not reuse_port:
        sock = config.bind_socket()
    else:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError as exc:
            sock.close()
            logger.error("cannot bind %s:%s: %s", config.host, config.port, exc)
            raise SystemExit(STARTUP_FAILURE) from exc
        sock.set_inheritable(True)
        host = f"[{config.host}]" if family == socket.AF_INET6 else config.host
        logger.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", host, sock.getsockname()[1])
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def run(settings: ServiceSettings | None = None) -> int:
    """Serve until stopped; return a process exit code (0 after a clean shutdown, 3 if the cache cannot load).

    With workers > 1 each worker process rebuilds the same settings from RECSYS_* variables (exported
    here) and memory-maps the same cache files, so the OS page cache holds one copy for all of them.
    """
    settings = settings or ServiceSettings()
    config = uvicorn_config(settings)  # also configures logging
    try:
        preflight(settings)
    except CacheLoadError as exc:
        print(f"recsys service: {exc}", file=sys.stderr)
        return EXIT_NO_CACHE
    os.environ.update(settings.to_env())
    try:
        started = serve(config)
    except KeyboardInterrupt:
        return 0
    return 0 if started else EXIT_NO_CACHE


def serve(config: uvicorn.Config) -> bool:
    """Bind the shared socket and serve on it (a worker supervisor when workers > 1) until stopped.

    Returns False only when a single server failed to start. Either way every server gets its socket
    from here, so `service.loop` accepts connections in batches with one worker or many.
    """
    sock = shared_socket(config, reuse_port=config.workers > 1 and per_worker_listeners())
    if config.workers > 1:
        Multiprocess(config, sockets=[sock]).run()
        return True
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return server.started


def usage() -> str:
    """`python -m service --help`: the RECSYS_* variables the service reads, with defaults."""
    lines = ["usage: python -m service   (configured by environment variables)", ""]
    for name, field in ServiceSettings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        lines.append(f"  RECSYS_{name.upper():<26} default {default!s:<40} {field.description or ''}".rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m service`: settings from the environment, clear message on bad config."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        print(usage(), file=sys.stdout if args[0] in {"-h", "--help"} else sys.stderr)
        return 0 if args[0] in {"-h", "--help"} else EXIT_BAD_CONFIG
    try:
        settings = ServiceSettings()
    except ValidationError as exc:
        print(f"recsys service: invalid configuration:\n{exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return run(settings)
