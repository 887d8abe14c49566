"""A pure-ASGI fast lane for the hot endpoint: well-formed ``GET /recommend/{id}[?n=k]`` answered before routing.

FastAPI's routing, parameter validation and response classes cost more CPU per request than the
lookup itself (issue #8 load test). The lane sits in front of them as ASGI middleware and answers
only the common, valid shape of the hot request with the route's own helpers (`parse_product_id`,
`resolve_n`, `audience`, `dumps`), so its status, headers and bytes are exactly what the route would
send. Everything else goes to FastAPI untouched: other paths and methods, any query other than a
bare positive ``n=<digits>``, ids or n that the helpers reject (FastAPI then renders the 422), and
any exception (FastAPI then handles, logs and answers it as for every other request). Nothing is
sent before the lane has the whole body, so falling back is always safe.

A client mistake (an id or n the helpers reject) is an expected fallback and is not logged. Any other
exception is: at WARNING with its traceback, at most once per ``FALLBACK_LOG_INTERVAL_S`` per worker
(the count of the fallbacks in between goes with the next warning), and every one at DEBUG.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

from service.payloads import audience, dumps, parse_product_id, resolve_n

logger = logging.getLogger("recsys.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/recommend/"
_N_QUERY = re.compile(rb"n=([1-9][0-9]{0,8})")
_PATH_LOC = ("path", "product_id")
_QUERY_LOC = ("query", "n")
FALLBACK_LOG_INTERVAL_S = 60.0


class FallbackLog:
    """Log unexpected fast-lane fallbacks with their traceback: WARNING at most once per interval, DEBUG always."""

    def __init__(self, interval_s: float = FALLBACK_LOG_INTERVAL_S) -> None:
        """Nothing logged yet; the first fallback is logged at WARNING."""
        self.interval_s = interval_s
        self.unlogged = 0
        self._next_warning = 0.0
        self._lock = threading.Lock()

    def record(self, path: str) -> None:
        """Log the exception being handled for a request to `path` (call inside an `except` block)."""
        now = time.monotonic()
        with self._lock:
            warn = now >= self._next_warning
            unlogged, self.unlogged = (self.unlogged, 0) if warn else (0, self.unlogged + 1)
            if warn:
                self._next_warning = now + self.interval_s
        if warn:
            logger.warning(
                "fast lane: falling back to FastAPI for GET %s (%d more fallbacks since the last warning)",
                path,
                unlogged,
                exc_info=True,
            )
        else:
            logger.debug("fast lane: falling back to FastAPI for GET %s", path, exc_info=True)


FALLBACKS = FallbackLog()


def answer(scope: Scope) -> bytes | None:
    """The JSON body for a well-formed GET /recommend/{id}[?n=k], else None (FastAPI answers)."""
    path: str = scope["path"]
    if scope["method"] != "GET" or not path.startswith(PREFIX):
        return None
    raw = path[len(PREFIX) :]
    if not raw or "/" in raw:
        return None
    query: bytes = scope.get("query_string", b"")
    n: int | None = None
    if query:
        match = _N_QUERY.fullmatch(query)
        if match is None:
            return None
        n = int(match.group(1))
    try:
        snapshot = scope["app"].state.holder.snapshot  # read once, as the route does
        pid = parse_product_id(raw, snapshot, _PATH_LOC)
        return dumps(audience(snapshot, pid, resolve_n(n, snapshot, _QUERY_LOC)))
    except HTTPException:  # a client mistake: FastAPI re-runs the request and renders the 422
        return None
    except Exception:  # a fault: logged here; FastAPI re-runs the request and owns the response
        FALLBACKS.record(path)
        return None


class RecommendFastLane:
    """ASGI middleware: answer the hot request itself when `answer` can, otherwise call the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app` (added with `FastAPI.add_middleware`, so `scope["app"]` is the FastAPI app)."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI event."""
        body = answer(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-length", str(len(body)).encode("latin-1")), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
