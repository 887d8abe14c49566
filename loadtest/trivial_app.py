"""The framework ceiling: a trivial FastAPI app with the service's URL shape and no work behind it.

Served exactly like the real service (same uvicorn options, event loop, workers and listening sockets) so that
``wrk`` against it measures what FastAPI + uvicorn + the load generator can do on this machine.
Run: ``python -m loadtest.trivial_app`` (port from RECSYS_PORT, workers from RECSYS_WORKERS).
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

BODY = b'{"status":"ok"}'


def create_app() -> FastAPI:
    """A FastAPI app whose /recommend/{product_id} and /health return a constant small JSON body."""
    app = FastAPI(title="trivial ceiling app")

    health_body = b'{"status":"ok","ready":true,"pid":%d}' % os.getpid()

    @app.get("/health")
    async def health() -> Response:
        """Readiness answer naming the worker (the runner waits until every worker has answered)."""
        return Response(health_body, media_type="application/json")

    @app.get("/recommend/{product_id}")
    async def recommend(product_id: str, n: int | None = None) -> Response:
        """Parse the same path and query as the real endpoint, do nothing, answer a constant body."""
        return Response(BODY, media_type="application/json")

    return app


def main() -> int:
    """Serve the trivial app on 127.0.0.1 exactly as service.main.run serves the service (same loop and sockets)."""
    from service.main import serve
    from service.workers import LOOP

    config = uvicorn.Config(
        "loadtest.trivial_app:create_app",
        factory=True,
        host="127.0.0.1",
        port=int(os.environ.get("RECSYS_PORT", "8001")),
        workers=int(os.environ.get("RECSYS_WORKERS", "1")),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        loop=LOOP,
    )
    return 0 if serve(config) else 1


if __name__ == "__main__":
    raise SystemExit(main())
