"""FastAPI app over the shared audience cache: tiny async handlers, JSON bytes built with orjson.

The hot GET /recommend/{id} is usually answered by `service.fastlane` before it reaches these routes
(same helpers, same bytes); the route below still serves everything the lane passes on.

Handlers declare pydantic response models (so /docs and /openapi.json are exact) but return ready
JSON bytes: FastAPI skips re-validation of a returned Response, and orjson turns a few dicts into
bytes in microseconds. No pandas on the request path; every request reads one cache Snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.resources
import logging
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator
from copy import deepcopy
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.config import relative
from service.campaigns import add_campaign_routes
from service.fastlane import RecommendFastLane
from service.names import add_name_routes
from service.payloads import audience, dumps, parse_product_id, resolve_n
from service.reasons import ExplainQuery, with_reasons
from service.schemas import (
    DEFAULT_N,
    MAX_SAMPLE,
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    HealthResponse,
    RecommendResponse,
    ReloadErrorInfo,
    SampleResponse,
    summarize_manifest,
)
from service.security import DOCS_PREFIX, Deadline, Guard, Policy
from service.settings import ServiceSettings
from service.state import CacheHolder, CacheLoadError, Snapshot

logger = logging.getLogger("recsys.service")

_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Client error (bad id, n, body)"},
}
_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    415: {"model": ErrorResponse, "description": "Body not sent as application/json"},
}


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------


def json_response(payload: Any, status_code: int = 200) -> Response:
    """Serialize `payload` with `dumps` into a JSON Response."""
    return Response(dumps(payload), status_code=status_code, media_type="application/json")


def batch_response(snapshot: Snapshot, product_ids: list[int | str], n: int) -> Response:
    """The /recommend/batch body, serialized item by item (peak memory: one item's dicts, not 1000)."""
    items = b",".join(dumps(audience(snapshot, pid, n)) for pid in product_ids)
    tail = orjson.dumps({"count": len(product_ids), "model": snapshot.version})
    return Response(b'{"items":[' + items + b"]," + tail[1:], media_type="application/json")


def sample_products(snapshot: Snapshot, n: int, seed: int) -> list[Any]:
    """Up to n distinct known product ids, drawn reproducibly from `seed`."""
    ids = snapshot.lookup.product_ids()
    size = min(n, len(ids))
    if size == 0:
        return []
    picks = np.random.default_rng(seed).choice(len(ids), size=size, replace=False)
    return np.asarray(ids)[picks].tolist()


def shown_path(path: Path) -> str:
    """A path as /health shows it: relative to the project root when inside it, else its name (never absolute)."""
    shown = relative(path)
    return Path(path).name if Path(shown).is_absolute() else shown


def health_payload(holder: CacheHolder, started: float) -> dict[str, Any]:
    """The /health body for the holder's current state (paths shown relative: `shown_path`)."""
    snap = holder.snapshot
    error = holder.last_error
    cache_dir = shown_path(holder.cache_dir)
    summary = summarize_manifest(snap.manifest)
    body = HealthResponse(
        status="degraded" if error else "ok",
        ready=True,
        pid=os.getpid(),
        cache_dir=cache_dir,
        cache=summary,
        loaded_at=snap.loaded_at,
        uptime_s=round(time.monotonic() - started, 3),
        reloads=holder.reloads,
        reload_failures=holder.reload_failures,
        last_reload_error=None
        if error is None
        else ReloadErrorInfo(at=error.at, message=error.message.replace(str(holder.cache_dir), cache_dir)),
    )
    return body.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------------
# Dependencies (async: sync dependencies would each cost a thread-pool hop)
# ---------------------------------------------------------------------------------------------------


async def get_holder(request: Request) -> CacheHolder:
    """The app's CacheHolder."""
    return request.app.state.holder


async def get_snapshot(holder: Annotated[CacheHolder, Depends(get_holder)]) -> Snapshot:
    """The cache version this request uses from start to end (read once)."""
    return holder.snapshot


def current_snapshot(request: Request) -> Snapshot:
    """The serving snapshot, read once: the hot path's plain-call twin of `get_snapshot`.

    GET /recommend reads it directly: FastAPI's resolution of the two nested dependencies cost ~20 µs
    per request, a fifth of the route's in-process CPU (96 -> 71 µs per call at n=10, issue #8 load test).
    """
    return request.app.state.holder.snapshot


HolderDep = Annotated[CacheHolder, Depends(get_holder)]
SnapshotDep = Annotated[Snapshot, Depends(get_snapshot)]
ProductIdPath = Annotated[
    str,
    PathParam(
        description="Product id, typed as in the data (see /health cache.id_kind).",
        json_schema_extra={"x-recsys-id": "product"},
    ),
]
NQuery = Annotated[
    int | None,
    Query(
        ge=1,
        description=f"Customers to return, 1 ≤ n ≤ cache N; default min({DEFAULT_N}, N).",
        json_schema_extra={"x-recsys-max": "n"},
    ),
]


# ---------------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------------


def add_routes(app: FastAPI) -> None:
    """Register the endpoints on `app`."""

    @app.get(
        "/health", response_model=HealthResponse, tags=["ops"], summary="Liveness, readiness and the serving cache"
    )
    async def health(holder: HolderDep) -> Response:
        """Always 200 while serving; `status` is 'degraded' when the last reload failed (old version serving)."""
        return json_response(health_payload(holder, app.state.started))

    @app.post(
        "/recommend/batch",
        response_model=BatchResponse,
        responses=_BODY_ERRORS,
        tags=["recommend"],
        summary="Top-n audiences for up to 1000 products",
    )
    async def recommend_batch(body: BatchRequest, snapshot: SnapshotDep) -> Response:
        """One item per requested product, in request order, all answered by the same cache version."""
        k = resolve_n(body.n, snapshot, ("body", "n"))
        ids = [parse_product_id(raw, snapshot, ("body", "product_ids", i)) for i, raw in enumerate(body.product_ids)]
        return batch_response(snapshot, ids, k)

    @app.get(
        "/recommend/{product_id}",
        response_model=RecommendResponse,
        responses=_ERRORS,
        tags=["recommend"],
        summary="Top-n audience for one product",
    )
    async def recommend(
        product_id: ProductIdPath, request: Request, n: NQuery = None, explain: ExplainQuery = False
    ) -> Response:
        """Unknown products get the global fallback ranking with `cold_start: true`; `explain` adds reasons."""
        snapshot = current_snapshot(request)
        pid = parse_product_id(product_id, snapshot, ("path", "product_id"))
        k = resolve_n(n, snapshot, ("query", "n"))
        body = audience(snapshot, pid, k)
        if explain:
            with_reasons(body["recommendations"], snapshot, pid, None)
        return json_response(body)

    @app.get(
        "/products/sample",
        response_model=SampleResponse,
        responses=_ERRORS,
        tags=["products"],
        summary="Random known product ids",
    )
    async def products_sample(
        snapshot: SnapshotDep,
        n: Annotated[int, Query(ge=1, le=MAX_SAMPLE, description="How many ids (fewer if the cache has fewer).")] = 10,
        seed: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="Seed for a reproducible sample.")] = None,
    ) -> Response:
        """Distinct product ids the cache knows; without `seed` a fresh one is drawn and returned."""
        used = secrets.randbits(32) if seed is None else seed
        ids = sample_products(snapshot, n, used)
        return json_response({"product_ids": ids, "count": len(ids), "seed": used, "model": snapshot.version})


# ---------------------------------------------------------------------------------------------------
# API docs offline: swagger-ui and redoc from the pinned fastapi-offline package, never a CDN
# ---------------------------------------------------------------------------------------------------

DOCS_STATIC = Path(str(importlib.resources.files("fastapi_offline") / "static"))
LANDING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>recsys audience service</title>
<link rel="icon" href="/docs/static/favicon.png"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>recsys audience service</h1>
<p>Which N customers to target for a product, served from the precomputed audience cache.</p>
<ul>
<li><a href="/docs">/docs</a>: the API, interactive (Swagger UI)</li>
<li><a href="/redoc">/redoc</a>: the API, to read (ReDoc)</li>
<li><a href="/openapi.json">/openapi.json</a>: the OpenAPI schema</li>
<li><a href="/health">/health</a>: status and the serving cache version</li>
</ul>
</body></html>
"""


# The docs pages may load nothing from elsewhere (the redoc bundle links a logo on a CDN; it stays unloaded).
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def docs_page(page: HTMLResponse) -> HTMLResponse:
    """A docs page with the Content-Security-Policy that keeps it on this server."""
    page.headers["content-security-policy"] = DOCS_CSP
    return page


def add_docs(app: FastAPI) -> None:
    """/docs, /redoc and / (a page linking them), with their assets served from the pinned package."""
    app.mount(DOCS_PREFIX.rstrip("/"), StaticFiles(directory=DOCS_STATIC), name="docs-static")
    favicon = f"{DOCS_PREFIX}favicon.png"

    @app.get("/", include_in_schema=False)
    async def landing() -> HTMLResponse:
        """A small page pointing to the docs."""
        return docs_page(HTMLResponse(LANDING))

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        """Swagger UI with local assets."""
        return docs_page(
            get_swagger_ui_html(
                openapi_url="/openapi.json",
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url="/docs/oauth2-redirect",
                swagger_js_url=f"{DOCS_PREFIX}swagger-ui-bundle.js",
                swagger_css_url=f"{DOCS_PREFIX}swagger-ui.css",
                swagger_favicon_url=favicon,
            )
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        """Swagger UI's OAuth2 redirect page (inline script, no assets)."""
        return docs_page(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        """ReDoc with local assets and no web fonts."""
        return docs_page(
            get_redoc_html(
                openapi_url="/openapi.json",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{DOCS_PREFIX}redoc.standalone.js",
                redoc_favicon_url=favicon,
                with_google_fonts=False,
            )
        )


# ---------------------------------------------------------------------------------------------------
# Errors: 4xx with clear messages, never a stack trace
# ---------------------------------------------------------------------------------------------------


def _error_item(error: dict[str, Any]) -> dict[str, Any]:
    """One pydantic/FastAPI error as {loc, msg, type}; JSON decode errors keep the parser's reason."""
    msg = str(error.get("msg", "invalid input"))
    reason = (error.get("ctx") or {}).get("error")
    if error.get("type") == "json_invalid" and reason:
        msg = f"{msg}: {reason}"
    return {"loc": list(error.get("loc", ())), "msg": msg, "type": str(error.get("type", "value_error"))}


def _is_json_request(request: Request) -> bool:
    """True when the request declares a JSON body."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    """422 with located messages (FastAPI's shape without echoing the input); 415 for non-JSON bodies."""
    errors = exc.errors()
    body_error = any(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors)
    if body_error and request.method == "POST" and not _is_json_request(request):
        return json_response(
            {"detail": "the request body must be JSON: send it with Content-Type: application/json"}, status_code=415
        )
    return json_response({"detail": [_error_item(e) for e in errors]}, status_code=422)


async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Client errors raised by handlers or routing (404, 405, 422 ...), as {"detail": ...}."""
    response = json_response({"detail": exc.detail}, status_code=exc.status_code)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def on_server_error(request: Request, exc: Exception) -> Response:
    """Log a real server fault with its traceback; the client gets a generic message only."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return json_response({"detail": "internal server error"}, status_code=500)


# ---------------------------------------------------------------------------------------------------
# OpenAPI: narrow id types and n's maximum to the cache actually loaded
# ---------------------------------------------------------------------------------------------------


def _narrow(node: Any, kinds: dict[str, str], maxima: dict[str, int]) -> None:
    """Rewrite `x-recsys-*` marked schema nodes in place: ids -> integer/string, n -> its maximum (N, candidates)."""
    if isinstance(node, dict):
        kind = kinds.get(node.get("x-recsys-id", ""))
        if kind:
            node.pop("anyOf", None)
            node["type"] = "integer" if kind == "int" else "string"
        limit = maxima.get(node.get("x-recsys-max", ""))
        if limit is not None:
            target = next((s for s in node.get("anyOf", []) if s.get("type") == "integer"), node)
            target["maximum"] = limit
        for value in node.values():
            _narrow(value, kinds, maxima)
    elif isinstance(node, list):
        for value in node:
            _narrow(value, kinds, maxima)


def secure_schema(schema: dict[str, Any], policy: Policy) -> None:
    """Declare the bearer-key scheme and a 401 on every operation the Guard protects (in place; keys on only)."""
    if not policy.keys.enabled:
        return
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key of RECSYS_API_KEYS, sent as Authorization: Bearer <key>.",
    }
    for path, operations in schema.get("paths", {}).items():
        if policy.is_public(path):
            continue
        for operation in operations.values():
            operation["security"] = [{"apiKey": []}]
            operation.setdefault("responses", {})["401"] = {
                "description": "Missing or invalid API key",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
            }


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with id types and n bounds of the serving cache (cached per cache shape)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        secure_schema(schema, app.state.policy)
        app.openapi_schema = schema
    holder: CacheHolder = app.state.holder
    if not holder.loaded:
        return app.openapi_schema
    snap = holder.snapshot
    depth = snap.lookup.candidate_depth
    key = (snap.id_kind, snap.customer_id_kind, snap.n, depth)
    cached = app.state.openapi_by_shape.get(key)
    if cached is None:
        cached = deepcopy(app.openapi_schema)
        _narrow(
            cached, {"product": snap.id_kind, "customer": snap.customer_id_kind}, {"n": snap.n, "candidates": depth}
        )
        app.state.openapi_by_shape[key] = cached
    return cached


# ---------------------------------------------------------------------------------------------------
# Lifespan: load once, poll for new versions, SIGHUP = check now
# ---------------------------------------------------------------------------------------------------


def check_logged(holder: CacheHolder, force: bool = False) -> None:
    """Run one update check; an unexpected error is logged, never raised (the old version keeps serving)."""
    try:
        holder.check_for_update(force=force)
    except Exception:
        logger.exception("cache update check failed")


async def poll_for_updates(holder: CacheHolder, interval_s: float) -> None:
    """Every `interval_s`, stat manifest.json and swap in a new version if it changed."""
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(check_logged, holder)


def _install_sighup(holder: CacheHolder) -> bool:
    """Make SIGHUP force an immediate reload attempt (main-thread event loops on POSIX only)."""
    if not hasattr(signal, "SIGHUP"):
        return False
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, check_logged, holder, True))
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread (e.g. TestClient)
        return False
    return True


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the cache once (failing start-up with a clear message), then watch it for new versions."""
    holder: CacheHolder = app.state.holder
    settings: ServiceSettings = app.state.settings
    if not holder.loaded:
        try:
            await asyncio.to_thread(holder.load)
        except CacheLoadError as exc:
            logger.error("start-up failed: %s", exc)
            raise
    gc.collect()
    gc.freeze()  # start-up objects leave the collector's view: fewer/shorter GC pauses on the request path
    app.state.started = time.monotonic()
    interval = settings.reload_interval_s
    poller = asyncio.create_task(poll_for_updates(holder, interval)) if interval > 0 else None
    sighup = _install_sighup(holder)
    try:
        yield
    finally:
        gc.unfreeze()
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


# ---------------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------------


def create_app(settings: ServiceSettings | None = None, holder: CacheHolder | None = None) -> FastAPI:
    """Build the app (uvicorn factory: `service.app:create_app`); the cache opens in the lifespan.

    Middleware, outermost first: CORS (when configured), `Guard` (body-size limit, API key, rate limit: every
    path but /health and the docs), the fast lane, `Deadline` (the request timeout), then FastAPI's routing. A
    route added with ``@app.get``/``@app.post`` (or ``app.include_router``) is behind the Guard with no code of
    its own; to make a new path public, add it to ``service.security.DOCS_PATHS`` (docs) or ``HEALTH_PATH``.
    """
    settings = settings or ServiceSettings()
    policy = Policy.from_settings(settings)
    app = FastAPI(
        title="recsys audience service",
        version="1.0.0",
        description="Which N customers to target for a product, served from the precomputed audience cache.",
        lifespan=lifespan,
        docs_url=None,  # served by add_docs from a pinned package, never a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.policy = policy
    app.state.holder = holder or CacheHolder(settings.cache_dir, verify=settings.cache_verify)
    app.state.started = time.monotonic()
    app.state.openapi_by_shape = {}
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_server_error)
    app.add_middleware(Deadline, timeout_s=settings.request_timeout_s)  # innermost: around FastAPI's routing only
    if settings.fast_lane:
        app.add_middleware(RecommendFastLane)
    app.add_middleware(Guard, policy=policy)  # before the lane and every route
    if settings.cors_origins:  # outermost, so preflights are answered and errors carry CORS headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "authorization"],
        )
    add_routes(app)
    add_campaign_routes(app, current_snapshot)
    add_name_routes(app, current_snapshot)
    add_docs(app)
    return app
