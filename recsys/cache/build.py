"""The top-N audience cache: build it for every product, write it atomically, look it up in microseconds.

Artifact directory (default ``recsys.config.CACHE_DIR``):

- ``audience.parquet``: ``product_id, rank, customer_id, score`` (float32) sorted by product then rank. Same
  inputs give a byte-identical file (no timestamps inside; fixed compression and row groups).
- ``lookup-<version>/``: memory-mappable ``.npy`` arrays (see ``LOOKUP_ARRAYS``): product ids sorted
  ascending (int64, or fixed-width unicode for string ids), CSR ``offsets``, ``customers`` (the
  integer customer ids themselves, or for string ids int32 codes into the sorted fixed-width
  ``customer_vocab``; empty for integer ids), ``scores`` (float32, as in the Parquet), per-product
  ``cold_start`` and the global fallback (``global_customers``, ``global_scores``) served for products unseen
  at build time.
- ``manifest.json``: a ``recsys.cache.manifest.CacheManifest`` (ranker + params, engine, input fingerprint,
  counts, N, the allocation settings (frequency cap, depth, candidates) and stats, exposure metrics before
  and after the cap, id kinds, version and ``lookup_dir``). It is the commit point: writers finish the lookup
  directory first, then replace the manifest with ``os.replace``; at most ``keep`` (default 2) lookup
  directories are kept (newest by modification time, the live one always).

Same inputs and params give a byte-identical artifact directory: nothing time-dependent is written;
the version is a digest of the served arrays, so a rebuild with the same content reuses its lookup
directory (DVC sees an unchanged output).

Audiences (``cache.allocation``): with ``max_exposures: null`` every product gets the ranker's own
top-N. With a cap, the ranker ranks ``candidates`` deep and ``recsys.allocation.allocate`` picks the
served top-N so that no customer is in more than ``max_exposures`` lists (optionally at least
``min_audience`` customers per product). The global fallback served for unseen product ids is the
ranker's plain global order, uncapped: it answers ad-hoc lookups, it is not a campaign audience.

``AudienceLookup.open`` maps the arrays read-only; ``top`` is a binary search plus two slices, no pandas.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recsys import config
from recsys.allocation import AllocationParams, allocate, exposure_metrics, truncate
from recsys.allocation.exposure import DEFAULT_KS, returning_customers
from recsys.cache.lookup import (
    AUDIENCE_NAME,
    EXPORT_STEM,
    LOOKUP_ARRAYS,
    LOOKUP_PREFIX,
    SCORE_DTYPE,
)
from recsys.cache.manifest import (
    FORMAT_VERSION,
    AllocationInfo,
    AllocationStats,
    BuildInfo,
    CacheCounts,
    CacheExposure,
    CacheFiles,
    CacheManifest,
    EngineInfo,
    ExposureSide,
    Fingerprint,
    IdKinds,
    InputCounts,
    read_manifest,
    write_manifest,
)
from recsys.data.contract import CANONICAL_COLUMNS
from recsys.data.ids import id_array as as_id_array
from recsys.data.ids import id_kind
from recsys.rankers import Ranker, Recommendations, make_ranker
from recsys.rankers.base import parallel_ranking

PARQUET_ROW_GROUP = 1 << 20
ENCODE_CHUNK = 1 << 22


# ----------------------------------------------------------------------------------------------
# ids, fingerprints
# ----------------------------------------------------------------------------------------------


def fixed_width(values: np.ndarray) -> np.ndarray:
    """String ids as a fixed-width unicode array (memory-mappable); integers as int64."""
    if np.asarray(values).dtype.kind in "iu":
        return np.asarray(values, dtype=np.int64)
    arr = np.asarray(values, dtype=object)
    if len(arr) == 0:
        return np.zeros(0, dtype="<U1")
    return arr.astype(str)


def fingerprint_file(path: Path) -> str:
    """sha256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_frame(interactions: pd.DataFrame) -> str:
    """sha256 of a table's canonical content, independent of row order."""
    cols = [c for c in CANONICAL_COLUMNS if c in interactions.columns]
    row_hashes = pd.util.hash_pandas_object(interactions[cols], index=False).to_numpy()
    return hashlib.sha256(np.sort(row_hashes).tobytes()).hexdigest()


def canonical_order(interactions: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by customer, product, date, event: float sums, hence the cache bytes, ignore input row order."""
    keys = [
        c for c in ("customer_id", "product_id", "event_date", "event", "product_name") if c in interactions.columns
    ]
    return interactions.sort_values(keys, kind="stable", na_position="last", ignore_index=True)


def catalogue_ids(interactions: pd.DataFrame) -> np.ndarray:
    """Every distinct product id of the interactions, sorted ascending."""
    ids = as_id_array(pd.unique(interactions["product_id"]))
    return np.sort(ids, kind="stable")


def cold_sentinel(catalogue: np.ndarray) -> Any:
    """A product id of the catalogue's kind that is not in the catalogue (asks a ranker for its global order)."""
    if id_kind(catalogue) == "int":
        return int(catalogue.max()) + 1 if len(catalogue) else 0
    sentinel = "\x00cold-start"
    while np.any(catalogue == sentinel):
        sentinel += "\x00"
    return sentinel


# ----------------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------------


def sort_by_product(recs: Recommendations) -> Recommendations:
    """Reorder CSR blocks so product ids are ascending (no-op if already sorted and unique)."""
    pids = as_id_array(recs.product_ids)
    order = np.argsort(pids, kind="stable")
    if len(pids) > 1 and np.all(order == np.arange(len(pids))):
        return recs
    sizes = np.diff(recs.offsets)[order]
    starts = recs.offsets[:-1][order]
    offsets = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    gather = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - starts, sizes)
    return Recommendations(
        product_ids=pids[order],
        offsets=offsets,
        customer_ids=np.asarray(recs.customer_ids)[gather],
        scores=np.asarray(recs.scores)[gather],
        cold_start=np.asarray(recs.cold_start, dtype=bool)[order],
    )


def _arrow_ids(values: np.ndarray) -> pa.Array:
    """An Arrow array of ids: integers keep their width, strings become utf8."""
    if values.dtype.kind in "iu":
        return pa.array(values)
    return pa.array(values, type=pa.string())


def audience_slice(
    product_ids: np.ndarray, ranks: np.ndarray, customer_ids: np.ndarray, scores: np.ndarray
) -> pa.Table:
    """One Arrow slice of the cache's long table (product_id, rank int32, customer_id, score float32)."""
    return pa.table(
        {
            "product_id": _arrow_ids(product_ids),
            "rank": pa.array(np.asarray(ranks).astype(np.int32)),
            "customer_id": _arrow_ids(customer_ids),
            "score": pa.array(np.asarray(scores, dtype=SCORE_DTYPE)),
        }
    )


def audience_batches(recs: Recommendations, rows: int = PARQUET_ROW_GROUP) -> Iterator[pa.Table]:
    """The cache's long table (product_id, rank, customer_id, score) in Arrow slices of `rows` rows."""
    pids = as_id_array(recs.product_ids)
    customers = as_id_array(recs.customer_ids)
    scores = np.asarray(recs.scores, dtype=SCORE_DTYPE)
    offsets = np.asarray(recs.offsets, dtype=np.int64)
    total = int(offsets[-1])
    for start in range(0, max(total, 1), rows):
        stop = min(start + rows, total)
        entry = np.arange(start, stop, dtype=np.int64)
        block = np.searchsorted(offsets, entry, side="right") - 1
        yield audience_slice(pids[block], entry - offsets[block] + 1, customers[start:stop], scores[start:stop])


def audience_table(recs: Recommendations) -> pa.Table:
    """The cache's long table as one Arrow table."""
    return pa.concat_tables(list(audience_batches(recs)))


def write_parquet_atomic(batches: Iterable[pa.Table], path: Path) -> str:
    """Stream tables into one deterministic Parquet file written atomically; return its sha256."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    writer = None
    try:
        for table in batches:
            if writer is None:
                writer = pq.ParquetWriter(
                    tmp,
                    table.schema,
                    compression="zstd",
                    compression_level=3,
                    use_dictionary=True,
                    write_statistics=True,
                )
            writer.write_table(table, row_group_size=PARQUET_ROW_GROUP)
        if writer is None:
            raise ValueError(f"nothing to write to {path}")
        writer.close()
        writer = None
        digest = fingerprint_file(tmp)
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return digest


def encode_customers(*id_arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Integer ids: stored as they are (empty vocabulary). String ids: sorted vocabulary + int32 codes."""
    arrays = [as_id_array(a) for a in id_arrays]
    if all(a.dtype.kind in "iu" for a in arrays):
        return np.zeros(0, dtype=np.int64), [np.ascontiguousarray(a) for a in arrays]
    seen = [pd.unique(a.astype(object)) for a in arrays]
    vocab = np.sort(pd.unique(np.concatenate(seen)) if seen else np.zeros(0, dtype=object))
    index = pd.Index(vocab)
    parts = []
    for a in arrays:
        codes = np.empty(len(a), dtype=np.int32)
        for start in range(0, len(a), ENCODE_CHUNK):
            codes[start : start + ENCODE_CHUNK] = index.get_indexer(a[start : start + ENCODE_CHUNK])
        parts.append(codes)
    return fixed_width(vocab), parts


def lookup_arrays(recs: Recommendations, fallback: Recommendations) -> dict[str, np.ndarray]:
    """The memory-mappable arrays of one cache version (recs must be sorted by product)."""
    g_size = int(fallback.offsets[1] - fallback.offsets[0]) if len(fallback) else 0
    g_ids = np.asarray(fallback.customer_ids)[:g_size]
    vocab, (customers, g_customers) = encode_customers(np.asarray(recs.customer_ids), g_ids)
    return {
        "product_ids": fixed_width(as_id_array(recs.product_ids)),
        "offsets": np.asarray(recs.offsets, dtype=np.int64),
        "customers": customers,
        "customer_vocab": vocab,
        "scores": np.asarray(recs.scores, dtype=SCORE_DTYPE),
        "cold_start": np.asarray(recs.cold_start, dtype=bool),
        "global_customers": g_customers,
        "global_scores": np.asarray(fallback.scores, dtype=SCORE_DTYPE)[:g_size],
    }


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the lookup arrays (name, dtype, shape and bytes of each, in LOOKUP_ARRAYS order)."""
    h = hashlib.sha256()
    for key in LOOKUP_ARRAYS:
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.data.cast("B"))
    return h.hexdigest()


def cache_version(audience_sha: str, arrays: Mapping[str, np.ndarray]) -> str:
    """Name of a cache version: a digest of what it serves (the audience file and the lookup arrays), no clock."""
    return hashlib.sha256(f"{audience_sha}:{arrays_digest(arrays)}".encode()).hexdigest()[:20]


def lookup_tmp_dir(cache_dir: Path) -> Path:
    """A fresh hidden directory inside `cache_dir` to write one lookup version into."""
    tmp = cache_dir / f".tmp-{LOOKUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    return tmp


def save_lookup_array(tmp: Path, key: str, array: np.ndarray) -> None:
    """Write one lookup array as <key>.npy and fsync it."""
    with (tmp / f"{key}.npy").open("wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def commit_lookup_dir(tmp: Path, cache_dir: Path, version: str) -> str:
    """Rename a complete temp lookup dir (every LOOKUP_ARRAYS file present) to lookup-<version>; return its name.

    The version is a content digest, so an existing lookup-<version> already holds these arrays: it is kept (and
    touched, so pruning counts it as the newest) and the temp dir is dropped.
    """
    missing = [key for key in LOOKUP_ARRAYS if not (tmp / f"{key}.npy").is_file()]
    if missing:
        raise RuntimeError(f"lookup arrays {missing} were not written into {tmp}")
    name = f"{LOOKUP_PREFIX}{version}"
    if (cache_dir / name).is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        os.utime(cache_dir / name)
        return name
    os.rename(tmp, cache_dir / name)
    return name


def write_lookup_dir(cache_dir: Path, arrays: Mapping[str, np.ndarray], version: str) -> str:
    """Write the arrays into a temp dir, then rename it to lookup-<version>; return its name (reused when present)."""
    name = f"{LOOKUP_PREFIX}{version}"
    if (cache_dir / name).is_dir():
        os.utime(cache_dir / name)
        return name
    tmp = lookup_tmp_dir(cache_dir)
    try:
        for key in LOOKUP_ARRAYS:
            save_lookup_array(tmp, key, arrays[key])
        return commit_lookup_dir(tmp, cache_dir, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prune_lookup_dirs(cache_dir: Path, keep: int, current: str) -> list[str]:
    """Delete all but the `keep` most recently written lookup dirs (never `current`); return the removed names."""
    found = [p for p in cache_dir.glob(f"{LOOKUP_PREFIX}*") if p.is_dir()]
    dirs = [p.name for p in sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))]
    survivors = set(dirs[-max(keep, 1) :]) | {current}
    removed = [d for d in dirs if d not in survivors]
    for d in removed:
        shutil.rmtree(cache_dir / d, ignore_errors=True)
    return removed


def export_original(recs: Recommendations, cache_dir: Path, fmt: str) -> Path:
    """Write the original project's layout (product_id, customer_id, score, rank) as CSV or Parquet."""
    return export_slices(audience_batches(recs), cache_dir, fmt)


def export_slices(slices: Iterable[pa.Table], cache_dir: Path, fmt: str) -> Path:
    """Write audience slices in the original project's layout (product_id, customer_id, score, rank)."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(
            f"cache export must be null, 'csv' or 'parquet', got {fmt!r} (params/cache.yaml: cache.export)"
        )
    batches = (t.select(["product_id", "customer_id", "score", "rank"]) for t in slices)
    path = cache_dir / f"{EXPORT_STEM}.{fmt}"
    if fmt == "parquet":
        write_parquet_atomic(batches, path)
        return path
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        writer = None
        for table in batches:
            writer = writer or pacsv.CSVWriter(tmp, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def jsonable(value: Any) -> Any:
    """Params made JSON-safe (numpy scalars, paths, dates become plain values)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def check_export(export: str | None) -> None:
    """Raise if cache.export is not null, 'csv' or 'parquet'."""
    if export not in (None, "csv", "parquet"):
        raise ValueError(
            f"cache export must be null, 'csv' or 'parquet', got {export!r} (params/cache.yaml: cache.export)"
        )


def write_cache(
    recs: Recommendations,
    fallback: Recommendations,
    cache_dir: Path,
    meta: BuildInfo,
    exposure: CacheExposure,
    *,
    export: str | None = None,
    keep: int = 2,
) -> CacheManifest:
    """Write audience.parquet, a new lookup dir and (last, atomically) manifest.json; return the manifest."""
    check_export(export)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    recs = sort_by_product(recs)
    arrays = lookup_arrays(recs, fallback)
    audience_sha = write_parquet_atomic(audience_batches(recs), cache_dir / AUDIENCE_NAME)
    version = cache_version(audience_sha, arrays)
    lookup_dir = write_lookup_dir(cache_dir, arrays, version)
    exported = export_original(recs, cache_dir, export) if export else None
    return commit_manifest(
        cache_dir,
        arrays,
        meta,
        exposure,
        version=version,
        lookup_dir=lookup_dir,
        audience_sha=audience_sha,
        exported=exported,
        keep=keep,
    )


def commit_manifest(
    cache_dir: Path,
    arrays: Mapping[str, np.ndarray],
    meta: BuildInfo,
    exposure: CacheExposure,
    *,
    version: str,
    lookup_dir: str,
    audience_sha: str,
    exported: Path | None,
    keep: int,
) -> CacheManifest:
    """Write manifest.json (the commit point) for a written audience + lookup dir, prune old dirs; return it.

    The one manifest writer of both engines: the build facts (`meta`), the exposure metrics and what the arrays hold.
    """
    sizes = np.diff(arrays["offsets"])
    counts = CacheCounts(
        interactions=meta.counts.interactions,
        customers=meta.counts.customers,
        catalogue=meta.counts.catalogue,
        products=int(len(arrays["product_ids"])),
        rows=int(arrays["offsets"][-1]),
        customers_ranked=int(len(pd.unique(arrays["customers"]))),
        products_with_full_audience=int((sizes >= meta.n).sum()),
        cold_start_products=int(arrays["cold_start"].sum()),
        global_fallback=int(len(arrays["global_customers"])),
    )
    manifest = CacheManifest(
        dataset=meta.dataset,
        ranker=meta.ranker,
        ranker_params=meta.ranker_params,
        model_source=meta.model_source,
        model_label=meta.model_label,
        n=meta.n,
        engine=meta.engine,
        fingerprint=meta.fingerprint,
        source=meta.source,
        allocation=meta.allocation,
        counts=counts,
        format_version=FORMAT_VERSION,
        version=version,
        lookup_dir=lookup_dir,
        exposure=exposure,
        id_kinds=IdKinds(
            product_id=id_kind(arrays["product_ids"]),
            customer_id="str" if arrays["customer_vocab"].dtype.kind == "U" else "int",
        ),
        files=CacheFiles(
            audience=AUDIENCE_NAME, audience_sha256=audience_sha, export=exported.name if exported else None
        ),
    )
    write_manifest(cache_dir, manifest)
    prune_lookup_dirs(cache_dir, keep, lookup_dir)
    return manifest


def global_fallback(ranker: Ranker, catalogue: np.ndarray, n: int) -> Recommendations:
    """The ranker's answer for a product it never saw: its global order, used for cold-start lookups."""
    return ranker.rank(
        np.asarray([cold_sentinel(catalogue)], dtype=object if id_kind(catalogue) == "str" else np.int64), n
    )


def ranked_audiences(
    ranker: Any, catalogue: np.ndarray, n: int, allocation: AllocationParams
) -> tuple[Recommendations, Recommendations, dict[str, Any]]:
    """(served audiences, the ranker's uncapped top-n, allocation stats) of every catalogue product."""
    allocation.check(n)
    if allocation.max_exposures is None:
        recs = ranker.rank(catalogue, n)
        return recs, recs, {"capped": False}
    candidates = ranker.rank(catalogue, allocation.candidates)
    result = allocate(candidates, ranker, n, allocation)
    return result.recommendations, truncate(candidates, n), result.stats


def arrays_recommendations(arrays: Mapping[str, np.ndarray]) -> Recommendations:
    """The served audiences as `Recommendations`, read from lookup arrays (memory-mapped arrays stay mapped)."""
    vocab = arrays["customer_vocab"]
    customers = vocab[arrays["customers"]].astype(object) if vocab.dtype.kind == "U" else arrays["customers"]
    products = arrays["product_ids"]
    return Recommendations(
        product_ids=products.astype(object) if products.dtype.kind == "U" else products,
        offsets=np.asarray(arrays["offsets"], dtype=np.int64),
        customer_ids=customers,
        scores=arrays["scores"],
        cold_start=np.asarray(arrays["cold_start"], dtype=bool),
    )


def allocation_info(params: AllocationParams, n: int, seed: int, stats: Mapping[str, Any]) -> AllocationInfo:
    """The manifest's allocation block: the settings, the depth and seed, and what the allocation did."""
    return AllocationInfo(
        **params.to_dict(), depth=int(n), seed=int(seed), stats=AllocationStats.from_stats(dict(stats))
    )


def uncapped_allocation(allocation: Mapping[str, Any] | None, n: int, seed: int) -> AllocationInfo:
    """The manifest's allocation block of a cache that serves every product's uncapped top-n."""
    params = AllocationParams.from_params({**dict(allocation or {}), "max_exposures": None}, seed=seed)
    return allocation_info(params, n, seed, {"capped": False})


def exposure_summary(
    served: Recommendations,
    uncapped: Recommendations,
    reachable: np.ndarray,
    n: int,
    exposure: Mapping[str, Any] | None,
    seed: int,
) -> CacheExposure:
    """Exposure metrics of the uncapped top-n and of the served audiences (cut-offs above n use the whole list);
    `reachable` = ids of the customers with dated events on >= 2 distinct days (``returning_customers``)."""
    cfg = dict(exposure or {})
    unknown = sorted(set(cfg) - {"ks", "pairs"})
    if unknown:
        raise ValueError(f"cache.exposure: unknown key(s) {unknown}; expected ['ks', 'pairs']")
    ks = sorted({min(int(k), n) for k in cfg.get("ks", DEFAULT_KS)})
    kwargs: dict[str, Any] = {"reachable": reachable, "pairs": int(cfg.get("pairs", 10_000)), "seed": seed}
    before = ExposureSide.model_validate(exposure_metrics(uncapped, ks, **kwargs).to_dict())
    after = (
        before if served is uncapped else ExposureSide.model_validate(exposure_metrics(served, ks, **kwargs).to_dict())
    )
    return CacheExposure(reachable="customers with dated events on >= 2 distinct days", uncapped=before, served=after)


def build_cache(
    interactions: pd.DataFrame,
    ranker_name: str,
    ranker_params: Mapping[str, Any] | None,
    cache_dir: Path,
    *,
    n: int = 100,
    export: str | None = None,
    fingerprint: Fingerprint | None = None,
    source: str | None = None,
    keep: int = 2,
    allocation: Mapping[str, Any] | None = None,
    exposure: Mapping[str, Any] | None = None,
    seed: int = 0,
    dataset: str | None = None,
    processes: int = 1,
    model_source: Literal["selection", "override"] | None = None,
    model_label: str | None = None,
) -> CacheManifest:
    """Fit `ranker_name`, allocate every product's top-n audience (capped per `allocation`) and write the cache.

    `dataset` names the data set the interactions come from (params/prepare.yaml: datasets), recorded in the manifest.
    `processes` forked workers rank the catalogue (block rankers: content, itemknn); the cache does not depend on it.
    """
    if n < 1:
        raise ValueError(f"cache depth n must be >= 1, got {n} (params/cache.yaml: cache.n)")
    alloc = AllocationParams.from_params(allocation, seed=seed)
    alloc.check(n)
    interactions = canonical_order(interactions)
    ranker = make_ranker(ranker_name, dict(ranker_params or {})).fit(interactions)
    catalogue = catalogue_ids(interactions)
    with parallel_ranking(processes):
        recs, uncapped, stats = ranked_audiences(ranker, catalogue, n, alloc)
    fallback = global_fallback(ranker, catalogue, n)
    meta = BuildInfo(
        dataset=dataset,
        ranker=ranker_name,
        ranker_params=jsonable(dict(ranker_params or {})),
        model_source=model_source,
        model_label=model_label,
        n=int(n),
        engine=EngineInfo(name="pandas"),
        fingerprint=fingerprint or Fingerprint(algorithm="sha256-rows", value=fingerprint_frame(interactions)),
        source=source,
        counts=InputCounts(
            interactions=int(len(interactions)),
            customers=int(interactions["customer_id"].nunique()),
            catalogue=int(len(catalogue)),
        ),
        allocation=allocation_info(alloc, n, seed, stats),
    )
    facts = exposure_summary(recs, uncapped, returning_customers(interactions), n, exposure, seed)
    return write_cache(recs, fallback, cache_dir, meta, facts, export=export, keep=keep)


def cache_facts(cache_dir: Path) -> dict[str, Any]:
    """Version, shape and on-disk size of a cache (for benchmark and load-test reports)."""
    manifest = read_manifest(cache_dir)
    size = sum(p.stat().st_size for p in (cache_dir / manifest.lookup_dir).glob("*.npy"))
    return {
        "dir": config.relative(cache_dir),
        "version": manifest.version,
        "ranker": manifest.ranker,
        "n": manifest.n,
        "products": manifest.counts.products,
        "rows": manifest.counts.rows,
        "lookup_arrays_mb": round(size / 2**20, 1),
    }
