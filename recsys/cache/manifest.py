"""The audience cache's manifest, typed: ``CacheManifest`` is written by every cache writer and read by every reader.

``manifest.json`` is the cache's commit point (see ``recsys.cache.build``). Writers (the pandas build and the
Spark writer, both through ``recsys.cache.build.commit_manifest``) build a ``CacheManifest`` and write it with
``write_manifest``: the model dumped to JSON with sorted keys and a fixed indent, so equal content gives equal
bytes (the cache is byte-identical for the same inputs). Readers (``recsys.cache.lookup``, the service's
``/health``, the dashboard, the load test, benchmarks and the cache report) get it from ``read_manifest``,
which raises ``CacheNotFoundError`` / ``CacheCorruptError`` naming the file, the bad field and the rebuild
command. The module imports pydantic only (no numpy, pandas or pyarrow): the service's start-up stays light.

Layout (every block a model below): what was built (``ranker``, ``ranker_params``, ``n``, ``engine``,
``fingerprint``, ``source``), the candidate depth and lists campaigns allocate from (``candidate_depth``,
``candidates``), the optional catalogue-wide frequency cap and what it did (``allocation``), the measured
precision of the served configuration and where it comes from (``served``), the exposure metrics of the
ranker's own top-n and of the served audiences (``exposure``), the counts, the id kinds, the files, and the
content-addressed ``version`` with its ``lookup_dir``. Nothing time-dependent is recorded.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from recsys.cache.faults import checkpoint

# 2: integer customer ids stored directly (`customers`), string ids as codes + vocabulary
# 3: scores stored as float32 in the lookup arrays and in audience.parquet
# 4: the manifest is a typed CacheManifest (engine block, typed allocation stats, no free-form keys)
# 5: audience.parquet (and the export) live in the version directory; `files.checksums` records the size and
#    CRC-32 of every file there, checked before a version is served
# 6: candidate arrays (every product's own ranking to cache.candidates, for campaigns), customer_vocab for every id
#    kind, the measured figures of the served configuration (`served`), what the version stores to explain its
#    pairs (`reasons`), allocation without `candidates`
# 7: a per-product `basis` array (why each audience is what it is), the new-products model's name index (by_name_*)
#    and products of a new-products catalogue
FORMAT_VERSION = 7
MANIFEST_NAME = "manifest.json"
BUILD_HINT = "build it with `recsys build-cache` (or `dvc repro cache`)"
MAX_REPORTED_ERRORS = 5

IdKind = Literal["int", "str"]
EngineName = Literal["pandas", "spark"]
FingerprintAlgorithm = Literal["sha256-file", "sha256-rows", "spark-xxhash64-sum"]


class CacheError(RuntimeError):
    """The audience cache cannot be used; the message names the path and how to rebuild it."""


class CacheNotFoundError(CacheError, FileNotFoundError):
    """No cache (no manifest.json) at the given directory."""


class CacheCorruptError(CacheError):
    """The cache exists but its manifest or arrays are unreadable or inconsistent."""


def corrupt(cache_dir: Path, detail: str) -> CacheCorruptError:
    """A corrupt-cache error naming the path and the rebuild command."""
    return CacheCorruptError(f"audience cache at {cache_dir} is corrupt or incomplete ({detail}); {BUILD_HINT}")


class Record(BaseModel):
    """Base of every manifest block: immutable, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineInfo(Record):
    """The engine that built the cache (Spark's version and master when it was Spark)."""

    name: EngineName
    spark_version: str | None = None
    master: str | None = None


class Fingerprint(Record):
    """Digest of the input interactions (file bytes, row content, or Spark's row-order-free digest)."""

    algorithm: FingerprintAlgorithm
    value: str


class InputCounts(Record):
    """Sizes of the input the cache was built from (`new_catalogue`: catalogue products not yet in the log)."""

    interactions: int = Field(ge=0)
    customers: int = Field(ge=0)
    catalogue: int = Field(ge=0)
    new_catalogue: int = Field(0, ge=0)


class CatalogueFile(Record):
    """The new-products catalogue file read by the build: rows in, kept, and the rows set aside per reason."""

    path: str
    rows_in: int = Field(ge=0)
    kept: int = Field(ge=0)
    rejected: dict[str, int]


class NewProductsInfo(Record):
    """The model of products without fit rows (catalogue names, /audiences/by-name) and whether it has a name index."""

    ranker: str
    ranker_params: dict[str, JsonValue]
    label: str | None
    by_name: bool


class CacheCounts(InputCounts):
    """Input sizes plus what the written arrays hold."""

    products: int = Field(ge=0)
    rows: int = Field(ge=0)
    customers_ranked: int = Field(ge=0)
    products_with_full_audience: int = Field(ge=0)
    cold_start_products: int = Field(ge=0)
    global_fallback: int = Field(ge=0)


class AllocationPass(Record):
    """One pass of the catalogue-wide allocation (``recsys.allocation.catalogue.solve``): how the slots were filled."""

    depth: int
    level: float | None
    proposal_edges: int
    da_rounds: int
    da_pairs: int
    fill_rounds: int
    fill_pairs: int
    residual_pairs: int
    open_slots: int


class AllocationStats(Record):
    """What the allocation did; every field but ``capped`` is None for uncapped audiences."""

    capped: bool
    k: int | None = None
    shortcut: bool | None = None
    passes: list[AllocationPass] | None = None
    pairs: int | None = None
    from_candidates: int | None = None
    fill_ins: int | None = None

    @classmethod
    def from_stats(cls, stats: dict[str, Any]) -> AllocationStats:
        """The stats of ``recsys.allocation.catalogue`` without the settings it repeats (kept in AllocationInfo)."""
        repeated = {"max_exposures", "min_audience"}
        return cls.model_validate({key: value for key, value in stats.items() if key not in repeated})


class AllocationInfo(Record):
    """The catalogue-wide frequency cap (params/cache.yaml: cache.allocation; off by default) and its stats."""

    max_exposures: int | None = Field(ge=1)
    min_audience: int = Field(ge=0)
    depth: int = Field(ge=1)
    seed: int
    stats: AllocationStats

    @property
    def capped(self) -> bool:
        """True when a frequency cap applies to the served audiences."""
        return self.max_exposures is not None


class ExposureAtK(Record):
    """Exposure counts at one cut-off k (``recsys.allocation.exposure`` defines every field).

    Restates the fields of ``recsys.allocation.exposure.ExposureAtK`` (k is the key here) because that module imports
    pandas and this one must stay light for the service; tests/test_cache.py keeps the two in step.
    """

    slots: int
    distinct_customers: int
    max_exposures: int
    p99_exposures: float
    mean_exposures: float
    gini: float
    reachable_used: int | None
    reachable_share: float | None
    gini_reachable: float | None


class ExposureSide(Record):
    """Exposure metrics of one set of audiences (``ExposureMetrics.to_dict()``), per cut-off k."""

    products: int
    depth: int
    at_k: dict[int, ExposureAtK]
    reachable: int | None
    jaccard_k: int
    jaccard_pairs: int
    mean_jaccard: float | None

    @property
    def ks(self) -> list[int]:
        """The cut-offs, ascending."""
        return sorted(self.at_k)

    def at(self, k: int) -> ExposureAtK:
        """The metrics at cut-off k (KeyError naming the cut-offs when absent)."""
        if k not in self.at_k:
            raise KeyError(f"no exposure metrics at k={k}; the manifest has k in {self.ks}")
        return self.at_k[k]


class CacheExposure(Record):
    """Exposure metrics before the cap (the ranker's own top-n) and of the served audiences."""

    reachable: str = Field(description="who counts as a reachable customer")
    uncapped: ExposureSide
    served: ExposureSide


class CandidateInfo(Record):
    """The candidate lists campaigns allocate from: every product's own ranking to ``depth`` (cache.candidates)."""

    depth: int = Field(ge=1)
    rows: int = Field(ge=0)
    products_full: int = Field(ge=0)  # products with `depth` candidates


class MeasuredPrecision(Record):
    """One measured figure of the served configuration: test precision@k with its interval and hits."""

    k: int = Field(ge=1)
    value: float | None
    low: float | None
    high: float | None
    hits: float


class ServedFigures(Record):
    """The measured precision of what the cache serves (``recsys.cache.figures``), never another configuration's.

    ``status``: ``measured`` when a measurement of exactly the served configuration exists (same data set, ranker,
    settings, cap; depths up to the served one), else ``not_measured`` with the ``reason``. ``source`` is the
    results file (relative path) and ``model`` the label the figures were measured under there.
    """

    status: Literal["measured", "not_measured"]
    what: str
    reason: str | None = None
    source: str | None = None
    model: str | None = None
    headline_k: int | None = None
    precision: list[MeasuredPrecision] = Field(default_factory=list)

    def at(self, k: int) -> MeasuredPrecision | None:
        """The figure at k, if measured."""
        return next((p for p in self.precision if p.k == k), None)


class ReasonsInfo(Record):
    """What the version stores to explain every served pair (``recsys.cache.facts``; read by ``recsys.reasons``)."""

    facts: list[str]  # per-customer fact arrays aligned with customer_vocab
    names: Literal["affinity", "neighbours", "engagement"] | None  # the name index's method (None: no name index)
    name_weight: float | None  # the weight of the name signal for the cached (known) products


class IdKinds(Record):
    """Whether product and customer ids are integers or strings."""

    product_id: IdKind
    customer_id: IdKind


class FileChecksum(Record):
    """Size and CRC-32 of one file of a cache version (what a reader checks before serving it)."""

    bytes: int = Field(ge=0)
    crc32: str = Field(pattern=r"^[0-9a-f]{8}$")


class CacheFiles(Record):
    """The files of the committed version, relative to the cache directory, and their checksums.

    ``checksums`` lists every file of the version directory (``lookup_dir``) by name: the lookup arrays, the
    audience table, the export and any array a later format adds, so a reader checks them all without
    knowing their names. CRC-32 detects torn, truncated or bit-flipped files (the failures a crash or a bad
    disk produces); it is not a defence against someone who can write the cache directory (they could
    rewrite the manifest too), so a cryptographic digest here would add time, not safety.
    """

    audience: str
    audience_sha256: str
    export: str | None
    checksums: dict[str, FileChecksum]


class BuildInfo(Record):
    """What an engine knows before it writes the arrays: the data set, the ranker, the input and the cap."""

    dataset: str | None = None  # params/prepare.yaml: datasets name of the input (None when built from a bare file)
    ranker: str
    ranker_params: dict[str, JsonValue]
    model_source: Literal["selection", "override"] | None = None  # the evaluation's selection, or params/cache.yaml
    model_label: str | None = None  # the evaluation's label of the served model (selection only)
    n: int = Field(ge=1)
    engine: EngineInfo
    fingerprint: Fingerprint
    source: str | None
    counts: InputCounts
    allocation: AllocationInfo
    candidate_depth: int = Field(ge=1)
    served: ServedFigures
    new_products: NewProductsInfo | None = None
    catalogue_file: CatalogueFile | None = None


class CacheManifest(BuildInfo):
    """manifest.json: the build facts, the exposure metrics and what the committed arrays hold."""

    format_version: int
    version: str = Field(min_length=1)
    lookup_dir: str = Field(min_length=1)
    counts: CacheCounts
    candidates: CandidateInfo
    exposure: CacheExposure
    id_kinds: IdKinds
    files: CacheFiles
    reasons: ReasonsInfo | None = None  # None: nothing stored to explain the pairs (e.g. a Spark build)

    def to_json(self) -> str:
        """The manifest as JSON text: sorted keys, indent 2, no NaN (equal content gives equal bytes)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_bytes(path: Path, data: bytes, staged: Callable[[], None] | None = None) -> None:
    """Write bytes to a temp file next to `path`, fsync it, call `staged()`, then os.replace and fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if staged is not None:
            staged()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename in it survives a power cut); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_manifest(cache_dir: Path, manifest: CacheManifest) -> Path:
    """Replace `cache_dir`/manifest.json atomically with the manifest (the cache's commit point)."""
    path = Path(cache_dir) / MANIFEST_NAME
    atomic_write_bytes(path, manifest.to_json().encode("utf-8"), staged=lambda: checkpoint("manifest-staged"))
    return path


def validation_detail(exc: ValidationError) -> str:
    """The first few validation errors as 'field.path: message' (the rest counted)."""
    errors = exc.errors()
    shown = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in errors[:MAX_REPORTED_ERRORS]]
    more = f" and {len(errors) - MAX_REPORTED_ERRORS} more" if len(errors) > MAX_REPORTED_ERRORS else ""
    return "; ".join(shown) + more


def read_manifest(cache_dir: Path) -> CacheManifest:
    """Read and validate manifest.json; a missing, unreadable or invalid one raises a CacheError naming the fix."""
    cache_dir = Path(cache_dir)
    path = cache_dir / MANIFEST_NAME
    if not path.is_file():
        raise CacheNotFoundError(f"no audience cache at {cache_dir} ({MANIFEST_NAME} not found); {BUILD_HINT}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise corrupt(cache_dir, f"{MANIFEST_NAME} unreadable: {exc}") from exc
    if not isinstance(doc, dict):
        raise corrupt(cache_dir, f"{MANIFEST_NAME} is not a JSON object")
    found = doc.get("format_version")
    if found != FORMAT_VERSION:
        raise corrupt(
            cache_dir, f"{MANIFEST_NAME} has format version {found!r}, this code reads version {FORMAT_VERSION}"
        )
    try:
        return CacheManifest.model_validate(doc)
    except ValidationError as exc:
        raise corrupt(cache_dir, f"{MANIFEST_NAME} is invalid: {validation_detail(exc)}") from exc
