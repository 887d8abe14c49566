"""Run the service under uvicorn with ServiceSettings: `python -m service` or `service.main.run(settings)`."""

from __future__ import annotations

import copy
import logging
import os
import sys
from typing import Any

import uvicorn
from pydantic import ValidationError
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE

from service.settings import ServiceSettings, unknown_variables
from service.state import VERIFIED_ENV, CacheLoadError, open_snapshot, signature_text
from service.workers import LOOP, Supervisor, serve_one

logger = logging.getLogger("recsys.service")

EXIT_BAD_CONFIG = 2
EXIT_NO_CACHE = 3
HTTP_PROTOCOL = "service.http:HeaderTimeoutProtocol"  # uvicorn's httptools protocol with a header timeout


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the `recsys` loggers on the same handler (applied in every worker)."""
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["recsys"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return cfg


def preflight(settings: ServiceSettings) -> None:
    """Open the cache once before uvicorn starts so a missing/corrupt cache fails fast with one clear line.

    Its files' checksums are checked here once; the workers then check sizes only for this same manifest
    (`service.state.VERIFIED_ENV`).
    """
    snapshot = open_snapshot(settings.cache_dir, verify=settings.cache_verify)
    if settings.cache_verify == "checksum":
        os.environ[VERIFIED_ENV] = signature_text(snapshot.signature)
    logger.info(
        "cache %s OK at %s (%d products, N=%d)",
        snapshot.version,
        settings.cache_dir,
        snapshot.product_count,
        snapshot.n,
    )


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
        http=HTTP_PROTOCOL,
        timeout_keep_alive=settings.keep_alive_s,
        lifespan="on",
        timeout_graceful_shutdown=10,
        loop=LOOP,
    )


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
    """Serve until stopped, each worker on its own listening socket (`service.workers`); False if it failed to start."""
    try:
        if config.workers > 1:
            return Supervisor(config).run() == 0
        return serve_one(config)
    except OSError as exc:  # the address is taken, or not ours to bind
        logger.error("cannot bind %s:%s: %s", config.host, config.port, exc)
        raise SystemExit(STARTUP_FAILURE) from exc


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
    for warning in unknown_variables(os.environ):
        print(f"recsys service: warning: {warning}", file=sys.stderr)
    try:
        settings = ServiceSettings()
    except ValidationError as exc:
        print(f"recsys service: invalid configuration:\n{config_errors(exc)}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return run(settings)


def config_errors(exc: ValidationError) -> str:
    """One line per invalid setting, named as its RECSYS_* variable; never the value (it may be a key)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = "_".join(str(p) for p in error["loc"]).upper()
        name = f"RECSYS_{loc}" if loc else "settings"
        lines.append(f"  {name}: {error['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)
