"""The cache writer both engines use: audience Parquet, the lookup directory of one version, the manifest commit.

Artifact directory (default ``recsys.config.CACHE_DIR``):

- ``audience.parquet``: the served audiences, ``product_id, rank, customer_id, score`` (float32) sorted by
  product then rank. Same inputs give a byte-identical file (no timestamps inside; fixed compression and row
  groups).
- ``lookup-<version>/``: memory-mappable ``.npy`` arrays. The served top-n (``SERVED_ARRAYS``, the only ones
  ``GET /recommend`` touches): product ids sorted ascending (int64, or fixed-width unicode for string ids),
  CSR ``offsets``, ``customers`` (integer customer ids themselves, or for string ids int32 codes into
  ``customer_vocab``), ``scores`` (float32, as in the Parquet), per-product ``cold_start`` and the global
  fallback (``global_customers``, ``global_scores``) served for products unseen at build time.
  ``customer_vocab`` is the sorted id of every customer the version stores (int64 or fixed-width unicode).
  The candidates (``CANDIDATE_ARRAYS``, read by campaigns only, in their own files so the hot path's pages stay
  few): every product's own ranking to the candidate depth (``candidate_offsets``, ``candidate_customers`` as
  int32 codes into ``customer_vocab``, ``candidate_scores`` float32), same product order.
- ``manifest.json``: a ``recsys.cache.manifest.CacheManifest``. It is the commit point: writers finish the lookup
  directory first, then replace the manifest with ``os.replace``; at most ``keep`` (default 2) lookup
  directories are kept (newest by modification time, the live one always).

The version is a digest of the served and candidate arrays and the audience file, so a rebuild with the same
content reuses its lookup directory (DVC sees an unchanged output). The pandas build (``recsys.cache.build``)
hands ``write_cache`` the arrays in memory; the Spark engine (``recsys.engines.spark.writer``) streams its
staging into the same files with ``audience_slice``, ``save_lookup_array`` and ``commit_lookup_dir`` and
commits with ``commit_manifest``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recsys.cache.facts import FACT_ARRAYS, Extras
from recsys.cache.lookup import AUDIENCE_NAME, EXPORT_STEM, LOOKUP_ARRAYS, LOOKUP_PREFIX, SCORE_DTYPE
from recsys.cache.manifest import (
    FORMAT_VERSION,
    BuildInfo,
    CacheCounts,
    CacheExposure,
    CacheFiles,
    CacheManifest,
    CandidateInfo,
    IdKinds,
    ReasonsInfo,
    write_manifest,
)
from recsys.data.ids import id_array as as_id_array
from recsys.data.ids import id_kind
from recsys.rankers import Recommendations

PARQUET_ROW_GROUP = 1 << 20
ENCODE_CHUNK = 1 << 22
DENSE_CODES = 1 << 26  # integer ids below this are coded through a lookup table (an int32 per id value)


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


def customer_index(*id_arrays: np.ndarray) -> np.ndarray:
    """The sorted distinct customer ids of the arrays: int64 for integer ids, fixed-width unicode for strings."""
    arrays = [as_id_array(a) for a in id_arrays]
    if all(a.dtype.kind in "iu" for a in arrays):
        parts = [np.unique(np.asarray(a, dtype=np.int64)) for a in arrays]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
    seen = [pd.unique(a.astype(object)) for a in arrays]
    return fixed_width(np.sort(pd.unique(np.concatenate(seen)) if seen else np.zeros(0, dtype=object)))


def codes_in(index: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """int32 positions of ids in the sorted customer index (every id must be in it)."""
    ids = as_id_array(ids)
    codes = np.empty(len(ids), dtype=np.int32)
    if len(ids) == 0:
        return codes
    if index.dtype.kind in "iu":
        values = np.asarray(ids, dtype=np.int64)
        if len(index) and index[0] >= 0 and index[-1] < DENSE_CODES:
            lut = np.full(int(index[-1]) + 1, -1, dtype=np.int32)
            lut[index] = np.arange(len(index), dtype=np.int32)
            for start in range(0, len(values), ENCODE_CHUNK):
                chunk = values[start : start + ENCODE_CHUNK]
                codes[start : start + ENCODE_CHUNK] = lut[np.clip(chunk, 0, len(lut) - 1)]
        else:
            for start in range(0, len(values), ENCODE_CHUNK):
                codes[start : start + ENCODE_CHUNK] = np.searchsorted(index, values[start : start + ENCODE_CHUNK])
    else:
        lookup = pd.Index(index.astype(object))
        for start in range(0, len(ids), ENCODE_CHUNK):
            codes[start : start + ENCODE_CHUNK] = lookup.get_indexer(ids[start : start + ENCODE_CHUNK].astype(object))
    if len(index) == 0 or (codes < 0).any() or not np.array_equal(index[codes].astype(object), ids.astype(object)):
        raise ValueError("a stored customer id is missing from the customer index")
    return codes


def lookup_arrays(
    recs: Recommendations, fallback: Recommendations, candidates: Recommendations
) -> dict[str, np.ndarray]:
    """The memory-mappable arrays of one version: served top-n and candidates (both sorted by product, same order)."""
    if not np.array_equal(np.asarray(recs.product_ids), np.asarray(candidates.product_ids)):
        raise ValueError("served audiences and candidates must list the same products in the same order")
    g_size = int(fallback.offsets[1] - fallback.offsets[0]) if len(fallback) else 0
    g_ids = as_id_array(np.asarray(fallback.customer_ids)[:g_size])
    served_ids = as_id_array(np.asarray(recs.customer_ids))
    index = customer_index(served_ids, g_ids, np.asarray(candidates.customer_ids))
    if index.dtype.kind == "U":
        customers, g_customers = codes_in(index, served_ids), codes_in(index, g_ids)
    else:
        customers, g_customers = np.ascontiguousarray(served_ids), np.ascontiguousarray(g_ids.astype(served_ids.dtype))
    return {
        "product_ids": fixed_width(as_id_array(recs.product_ids)),
        "offsets": np.asarray(recs.offsets, dtype=np.int64),
        "customers": customers,
        "customer_vocab": index,
        "scores": np.asarray(recs.scores, dtype=SCORE_DTYPE),
        "cold_start": np.asarray(recs.cold_start, dtype=bool),
        "global_customers": g_customers,
        "global_scores": np.asarray(fallback.scores, dtype=SCORE_DTYPE)[:g_size],
        "candidate_offsets": np.asarray(candidates.offsets, dtype=np.int64),
        "candidate_customers": codes_in(index, np.asarray(candidates.customer_ids)),
        "candidate_scores": np.asarray(candidates.scores, dtype=SCORE_DTYPE),
    }


def arrays_digest(arrays: Mapping[str, np.ndarray], extras: Extras | None = None) -> str:
    """sha256 over the lookup arrays (name, dtype, shape and bytes of each, in LOOKUP_ARRAYS order), then the reason
    arrays and the name index's meta when the version has them."""
    h = hashlib.sha256()
    more = extras.arrays() if extras is not None else {}
    for key, value in [*((k, arrays[k]) for k in LOOKUP_ARRAYS), *more.items()]:
        a = np.ascontiguousarray(value)
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.data.cast("B"))
    if extras is not None:
        h.update(extras.meta_text().encode())
    return h.hexdigest()


def cache_version(audience_sha: str, arrays: Mapping[str, np.ndarray], extras: Extras | None = None) -> str:
    """Name of a cache version: a digest of what it serves (the audience file and the lookup arrays), no clock."""
    return hashlib.sha256(f"{audience_sha}:{arrays_digest(arrays, extras)}".encode()).hexdigest()[:20]


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


def write_lookup_dir(
    cache_dir: Path, arrays: Mapping[str, np.ndarray], version: str, extras: Extras | None = None
) -> str:
    """Write the arrays (and the reason arrays) into a temp dir, then rename it to lookup-<version>; return its name
    (reused when present)."""
    name = f"{LOOKUP_PREFIX}{version}"
    if (cache_dir / name).is_dir():
        os.utime(cache_dir / name)
        return name
    tmp = lookup_tmp_dir(cache_dir)
    try:
        for key in LOOKUP_ARRAYS:
            save_lookup_array(tmp, key, arrays[key])
        if extras is not None:
            extras.write(tmp)
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
    candidates: Recommendations,
    fallback: Recommendations,
    cache_dir: Path,
    meta: BuildInfo,
    exposure: CacheExposure,
    *,
    export: str | None = None,
    keep: int = 2,
    reasons: Callable[[np.ndarray], Extras] | None = None,
) -> CacheManifest:
    """Write audience.parquet, a new lookup dir and (last, atomically) manifest.json; return the manifest.

    `recs` are the served audiences, `candidates` every product's own ranking to the candidate depth (same products);
    `reasons(customer_vocab)` gives the reason arrays (``recsys.cache.facts``) aligned with the version's customers.
    """
    check_export(export)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    recs = sort_by_product(recs)
    arrays = lookup_arrays(recs, fallback, sort_by_product(candidates))
    audience_sha = write_parquet_atomic(audience_batches(recs), cache_dir / AUDIENCE_NAME)
    extras = reasons(arrays["customer_vocab"]) if reasons is not None else None
    version = cache_version(audience_sha, arrays, extras)
    lookup_dir = write_lookup_dir(cache_dir, arrays, version, extras)
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
        extras=extras,
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
    extras: Extras | None = None,
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
    cand_sizes = np.diff(arrays["candidate_offsets"])
    manifest = CacheManifest(
        **{key: value for key, value in dict(meta).items() if key != "counts"},
        counts=counts,
        candidates=CandidateInfo(
            depth=meta.candidate_depth,
            rows=int(arrays["candidate_offsets"][-1]),
            products_full=int((cand_sizes >= meta.candidate_depth).sum()),
        ),
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
        reasons=reasons_info(extras, meta.ranker_params),
    )
    write_manifest(cache_dir, manifest)
    prune_lookup_dirs(cache_dir, keep, lookup_dir)
    return manifest


def reasons_info(extras: Extras | None, params: Mapping[str, Any]) -> ReasonsInfo | None:
    """What the version can explain: customer facts, and the name index's method and the known products' weight."""
    if extras is None:
        return None
    meta = extras.names.meta if extras.names is not None else None
    weight = None
    if meta is not None:
        key = "affinity_weight" if meta.method == "affinity" else "neighbour_weight"
        weight = float(params.get(key, meta.weight))
    return ReasonsInfo(facts=list(FACT_ARRAYS), names=None if meta is None else meta.method, name_weight=weight)


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
