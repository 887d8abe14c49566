"""Request and response models: they define /openapi.json (responses themselves are built as JSON bytes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from recsys.cache.manifest import CacheManifest, EngineName, IdKind, ServedFigures
from recsys.reasons import Reasons


def _int_or_str(value: Any) -> Any:
    """Accept only JSON integers and strings as ids (no floats, booleans, nulls, objects)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"product ids must be JSON integers or strings, got {type(value).__name__} {value!r}")
    return value


MAX_BATCH = 1000
MAX_SAMPLE = 1000
DEFAULT_N = 10

# Product / customer ids are ints or strings depending on the data; the `x-recsys-id` marker lets the
# OpenAPI builder narrow the schema to the loaded cache's actual kind (see service.app.openapi_schema).
ProductId = Annotated[int | str, Field(json_schema_extra={"x-recsys-id": "product"})]
CustomerId = Annotated[int | str, Field(json_schema_extra={"x-recsys-id": "customer"})]
RequestedId = Annotated[int | str, BeforeValidator(_int_or_str), Field(json_schema_extra={"x-recsys-id": "product"})]


class Recommendation(BaseModel):
    """One targeted customer."""

    customer_id: CustomerId
    score: float = Field(
        description="Ranker score at float32 precision (shortest decimal form); non-increasing with rank."
    )
    rank: int = Field(ge=1, description="1-based position in the audience.")
    reasons: Reasons | None = Field(None, description="With ?explain=true: why this customer (recsys.reasons).")


class RecommendResponse(BaseModel):
    """The top-n audience for one product."""

    product_id: ProductId
    recommendations: list[Recommendation]
    count: int = Field(ge=0, description="Number of recommendations returned (can be < n for sparse data).")
    cold_start: bool = Field(
        description="True when the product has no history: unknown to the cache (the global fallback is served), or "
        "a catalogue product ranked from its name."
    )
    basis: str = Field(
        description="Why the audience is what it is: history | name | no_name | no_known_token | names_unused "
        "(recsys.basis.BASIS_TEXT)."
    )
    model: str = Field(description="Cache version that produced this answer.")


class BatchRequest(BaseModel):
    """Several products at once; ids as the cache types them (numeric strings are accepted for int ids)."""

    model_config = ConfigDict(extra="forbid")

    product_ids: list[RequestedId] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} product ids."
    )
    n: Annotated[StrictInt, Field(ge=1)] | None = Field(
        None,
        description=f"Customers per product, 1 ≤ n ≤ cache N; default min({DEFAULT_N}, N).",
        json_schema_extra={"x-recsys-max": "n"},
    )


class BatchResponse(BaseModel):
    """One item per requested product, in request order, all from the same cache version."""

    items: list[RecommendResponse]
    count: int
    model: str


class SampleResponse(BaseModel):
    """Random known product ids (handy for smoke tests and load tests)."""

    product_ids: list[ProductId]
    count: int
    seed: int = Field(description="Seed used; pass it back to get the same sample from the same cache version.")
    model: str


class ManifestSummary(BaseModel):
    """What the serving cache is (from its typed manifest, recsys.cache.manifest.CacheManifest)."""

    version: str = Field(description="Content-addressed cache version: a digest of what it serves (no build time).")
    ranker: str
    engine: EngineName
    products: int
    n: int = Field(description="Cache depth N: the largest n a request may ask for.")
    id_kind: IdKind
    customer_id_kind: IdKind
    max_exposures: int | None = Field(
        description="Catalogue-wide cap: no customer is in more than this many served audiences; null = uncapped."
    )
    candidate_depth: int = Field(description="Candidates stored per product: the largest n POST /campaigns accepts.")
    served: ServedFigures = Field(
        description="Measured precision of exactly the served configuration (ranker, settings, depth, cap), with "
        "what was measured and where it comes from; status not_measured (and why) when no such measurement exists."
    )
    data_fingerprint: str = Field(description="Digest of the interactions the cache was built from.")


class ReloadErrorInfo(BaseModel):
    """The last failed reload (the previous version kept serving)."""

    at: datetime
    message: str


class HealthResponse(BaseModel):
    """Liveness/readiness and the serving cache."""

    status: Literal["ok", "degraded"] = Field(
        description="'degraded' = the last reload failed; the previous version still serves."
    )
    ready: bool
    pid: int
    cache_dir: str = Field(
        description="The cache directory relative to the project root (or just its name): never an absolute path."
    )
    cache: ManifestSummary
    loaded_at: datetime
    uptime_s: float
    reloads: int
    reload_failures: int
    last_reload_error: ReloadErrorInfo | None


class ErrorItem(BaseModel):
    """One client error, in FastAPI's validation-error shape."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: `detail` is a message or a list of located errors."""

    detail: str | list[ErrorItem]


def summarize_manifest(manifest: CacheManifest) -> ManifestSummary:
    """The fields /health shows, from the serving cache's manifest."""
    return ManifestSummary(
        version=manifest.version,
        ranker=manifest.ranker,
        engine=manifest.engine.name,
        products=manifest.counts.products,
        n=manifest.n,
        id_kind=manifest.id_kinds.product_id,
        customer_id_kind=manifest.id_kinds.customer_id,
        max_exposures=manifest.allocation.max_exposures,
        candidate_depth=manifest.candidate_depth,
        served=manifest.served,
        data_fingerprint=manifest.fingerprint.value,
    )
