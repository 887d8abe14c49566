"""The cache writer both engines use: one version directory per cache version, then the manifest commit.

Artifact directory (default ``recsys.config.CACHE_DIR``):

- ``lookup-<version>/``: one version directory per cache version, holding everything that version serves:
  ``audience.parquet`` (the served audiences, ``product_id, rank, customer_id, score`` float32, sorted by product
  then rank; same inputs give a byte-identical file) and memory-mappable ``.npy`` arrays. The served top-n
  (``SERVED_ARRAYS``, the only ones ``GET /recommend`` touches): product ids sorted ascending (int64, or fixed-width
  unicode for string ids), CSR ``offsets``, ``customers`` (integer customer ids themselves, or for string ids int32
  codes into ``customer_vocab``), ``scores`` (float32, as in the Parquet), per-product ``cold_start`` and the global
  fallback (``global_customers``, ``global_scores``) served for products unseen at build time. ``customer_vocab`` is
  the sorted id of every customer the version stores (int64 or fixed-width unicode). The candidates
  (``CANDIDATE_ARRAYS``, read by campaigns only, in their own files so the hot path's pages stay few): every
  product's own ranking to the candidate depth (``candidate_offsets``, ``candidate_customers`` as int32 codes into
  ``customer_vocab``, ``candidate_scores`` float32), same product order. The reason arrays
  (``recsys.cache.facts``: customer facts, and the served name ranker's index with a ``served_names_`` prefix),
  when the build stores them.
- ``manifest.json``: a ``recsys.cache.manifest.CacheManifest``, with the size and CRC-32 of every file of the
  version directory. It is the commit point: writers finish the version directory first (in a hidden temp dir,
  renamed into place), then replace the manifest with ``os.replace``; at most ``keep`` (default 2) version
  directories are kept (newest by modification time, the live one always), so the previous version stays
  available for a rollback.

Crash safety: a build holds an fcntl lock beside the directory (``build_lock``: a second build waits, then
refuses), removes what killed builds left behind (``remove_stale``), and turns a full disk or a file-size limit
into a ``CacheBuildError`` that names the still-served version (``writing``). A build killed at any point
(``recsys.cache.faults`` names the points the tests kill it at) leaves manifest.json naming a complete version.

The version is a digest of the audience file, the lookup arrays and the reason arrays, so a rebuild with the same
content reuses its version directory (DVC sees an unchanged output). The pandas build (``recsys.cache.build``)
hands ``write_cache`` the arrays in memory; the Spark engine (``recsys.engines.spark.writer``) streams its staging
into the same files with ``audience_slice``, ``save_lookup_array`` and ``commit_lookup_dir`` and commits with
``commit_manifest``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import resource
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.basis import BASES
from recsys.cache.facts import FACT_ARRAYS, META_NAME, Extras
from recsys.cache.faults import checkpoint
from recsys.cache.lookup import (
    AUDIENCE_NAME,
    BY_NAME_PREFIX,
    EXPORT_STEM,
    LOOKUP_ARRAYS,
    LOOKUP_PREFIX,
    NAMES_PREFIX,
    SCORE_DTYPE,
    dir_checksums,
)
from recsys.cache.manifest import (
    FORMAT_VERSION,
    BuildInfo,
    CacheCounts,
    CacheError,
    CacheExposure,
    CacheFiles,
    CacheManifest,
    CandidateInfo,
    IdKinds,
    ReasonsInfo,
    fsync_dir,
    read_manifest,
    write_manifest,
)
from recsys.data.ids import id_array as as_id_array
from recsys.data.ids import id_kind
from recsys.exports import write_csv_batches
from recsys.rankers import Recommendations

PARQUET_ROW_GROUP = 1 << 20
ENCODE_CHUNK = 1 << 22
DENSE_CODES = 1 << 26  # integer ids below this are coded through a lookup table (an int32 per id value)
LOCK_WAIT_S = 600.0  # how long a build waits for another build of the same cache directory to finish writing
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"

logger = logging.getLogger(__name__)


class CacheBuildError(CacheError):
    """A build could not write or commit its version; the message says why and which version still serves."""


class CacheLockedError(CacheBuildError):
    """Another build holds the cache directory's build lock."""


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
        basis=None if recs.basis is None else np.asarray(recs.basis, dtype=object)[order],
    )


def concat_recommendations(parts: Sequence[Recommendations]) -> Recommendations:
    """The blocks of several Recommendations one after the other (their order kept; `sort_by_product` sorts)."""
    if len(parts) == 1:
        return parts[0]
    sizes = np.concatenate([np.diff(p.offsets) for p in parts])
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return Recommendations(
        product_ids=np.concatenate([as_id_array(p.product_ids) for p in parts]),
        offsets=offsets,
        customer_ids=np.concatenate([as_id_array(np.asarray(p.customer_ids)) for p in parts]),
        scores=np.concatenate([np.asarray(p.scores, dtype=np.float64) for p in parts]),
        cold_start=np.concatenate([np.asarray(p.cold_start, dtype=bool) for p in parts]),
        basis=np.concatenate([np.asarray(p.basis, dtype=object) for p in parts]),
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


def write_parquet_atomic(batches: Iterable[pa.Table], path: Path) -> str:
    """Stream tables into one deterministic Parquet file written atomically (and fsynced); return its sha256."""
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
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
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
        "basis": basis_codes(recs),
        "global_customers": g_customers,
        "global_scores": np.asarray(fallback.scores, dtype=SCORE_DTYPE)[:g_size],
        "candidate_offsets": np.asarray(candidates.offsets, dtype=np.int64),
        "candidate_customers": codes_in(index, np.asarray(candidates.customer_ids)),
        "candidate_scores": np.asarray(candidates.scores, dtype=SCORE_DTYPE),
    }


def basis_codes(recs: Recommendations) -> np.ndarray:
    """Each product's basis as a uint8 code into recsys.basis.BASES."""
    basis = np.asarray(recs.basis if recs.basis is not None else [], dtype=object)
    codes = {name: i for i, name in enumerate(BASES)}
    return np.fromiter((codes[str(b)] for b in basis), dtype=np.uint8, count=len(basis))


def arrays_digest(arrays: Mapping[str, np.ndarray], extras: Extras | None = None) -> str:
    """sha256 over the lookup arrays (name, dtype, shape and bytes of each, in LOOKUP_ARRAYS order), then the reason
    arrays (sorted by file name) and the name index's meta text when the version has them."""
    more, meta = (extras.arrays(), extras.meta_text()) if extras is not None else ({}, "")
    return digest_of(arrays, more, meta)


def digest_of(arrays: Mapping[str, np.ndarray], more: Mapping[str, np.ndarray], meta: str) -> str:
    """sha256 over the lookup arrays, the reason arrays `more` (in their order) and the meta text."""
    h = hashlib.sha256()
    for key, value in [*((k, arrays[k]) for k in LOOKUP_ARRAYS), *more.items()]:
        a = np.ascontiguousarray(value)
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.data.cast("B"))
    h.update(meta.encode())
    return h.hexdigest()


def stored_extras(version_dir: Path) -> tuple[dict[str, np.ndarray], str]:
    """The reason arrays a version directory holds (every .npy beyond LOOKUP_ARRAYS, sorted by name) and its name
    index meta text ('' without one): what `arrays_digest` digested when the version was written."""
    skip = set(LOOKUP_ARRAYS)
    keys = sorted(f.stem for f in version_dir.glob("*.npy") if f.stem not in skip)
    more = {key: np.load(version_dir / f"{key}.npy", mmap_mode="r", allow_pickle=False) for key in keys}
    metas = [version_dir / f"{prefix}{META_NAME}" for prefix in (NAMES_PREFIX, BY_NAME_PREFIX)]
    return more, "".join(p.read_text(encoding="utf-8") for p in metas if p.is_file())


def cache_version(audience_sha: str, arrays: Mapping[str, np.ndarray], extras: Extras | None = None) -> str:
    """Name of a cache version: a digest of what it serves (the audience file and the lookup arrays), no clock."""
    return version_name(audience_sha, arrays_digest(arrays, extras))


def version_name(audience_sha: str, digest: str) -> str:
    """The 20-hex version name of an audience file's sha and the arrays' digest."""
    return hashlib.sha256(f"{audience_sha}:{digest}".encode()).hexdigest()[:20]


def lookup_tmp_dir(cache_dir: Path) -> Path:
    """A fresh hidden directory inside `cache_dir` to write one cache version into."""
    tmp = cache_dir / f"{TMP_PREFIX}{LOOKUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    return tmp


def save_lookup_array(tmp: Path, key: str, array: np.ndarray) -> None:
    """Write one lookup array as <key>.npy and fsync it."""
    with (tmp / f"{key}.npy").open("wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def version_matches(version_dir: Path, version: str) -> bool:
    """True when the files of `version_dir` hash to `version` (an existing version directory is reused only then):
    the audience, the lookup arrays and whatever reason arrays it holds (a missing one changes the digest)."""
    try:
        arrays = {key: np.load(version_dir / f"{key}.npy", mmap_mode="r", allow_pickle=False) for key in LOOKUP_ARRAYS}
        more, meta = stored_extras(version_dir)
        return version_name(fingerprint_file(version_dir / AUDIENCE_NAME), digest_of(arrays, more, meta)) == version
    except (OSError, ValueError, EOFError):
        return False


def commit_lookup_dir(tmp: Path, cache_dir: Path, version: str, *, reuse: bool | None = None) -> str:
    """Rename a complete temp version dir (every LOOKUP_ARRAYS file and the audience) to lookup-<version>.

    The version is a content digest, so an existing lookup-<version> whose files still hash to it already holds
    this version: it is kept (and touched, so pruning counts it as the newest) and the temp dir is dropped
    (`reuse`: that check's result when the caller made it). An existing directory that does not match (damaged
    by a crash or a disk fault) is replaced. Returns the directory's name.
    """
    name = f"{LOOKUP_PREFIX}{version}"
    target = cache_dir / name
    if reuse is None:
        reuse = target.is_dir() and version_matches(target, version)
    if reuse:
        shutil.rmtree(tmp, ignore_errors=True)
        os.utime(target)
        checkpoint("version-committed")
        return name
    missing = [f for f in (*[f"{key}.npy" for key in LOOKUP_ARRAYS], AUDIENCE_NAME) if not (tmp / f).is_file()]
    if missing:
        raise RuntimeError(f"cache files {missing} were not written into {tmp}")
    trash = None
    if target.exists():  # a damaged copy of this version: move it aside, then put the good one in its place
        logger.warning("%s does not match its version digest; replacing it", target)
        trash = cache_dir / f"{TRASH_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
        os.rename(target, trash)
    os.rename(tmp, target)
    fsync_dir(cache_dir)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    checkpoint("version-committed")
    return name


def prune_lookup_dirs(cache_dir: Path, keep: int, current: str) -> list[str]:
    """Delete all but the `keep` most recently written version dirs (never `current`); return the removed names."""
    found = [p for p in cache_dir.glob(f"{LOOKUP_PREFIX}*") if p.is_dir()]
    dirs = [p.name for p in sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))]
    survivors = set(dirs[-max(keep, 1) :]) | {current}
    removed = [d for d in dirs if d not in survivors]
    for d in removed:
        shutil.rmtree(cache_dir / d, ignore_errors=True)
    return removed


def remove_stale(cache_dir: Path) -> list[str]:
    """Remove what killed builds left behind (hidden temp dirs and files in the cache and version dirs); call locked."""
    found = [*cache_dir.glob(f"{TMP_PREFIX}*"), *cache_dir.glob(f"{TRASH_PREFIX}*"), *cache_dir.glob(".*.tmp")]
    found += [p for d in cache_dir.glob(f"{LOOKUP_PREFIX}*") if d.is_dir() for p in d.glob(".*.tmp")]
    for path in found:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if found:
        logger.info("removed %d temporary file(s) of earlier, interrupted builds from %s", len(found), cache_dir)
    return sorted(p.name for p in found)


def lock_path(cache_dir: Path) -> Path:
    """The build lock of a cache directory: a hidden file beside it (never inside the DVC-tracked output)."""
    return cache_dir.parent / f".{cache_dir.name}.build.lock"


@contextlib.contextmanager
def build_lock(cache_dir: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the cache directory's build lock while writing; wait up to `wait_s` for another build, then refuse.

    An fcntl lock: the kernel releases it when its holder exits, killed or not, so a crashed build never leaves
    the directory locked. The holder's pid is written into the lock file for the messages.
    """
    path = lock_path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                if time.monotonic() >= deadline:
                    raise CacheLockedError(
                        f"another build (pid {holder}) is writing the cache at {cache_dir}; waited {wait_s:g} s. "
                        "Let it finish (or stop it) and build again; its lock goes with its process"
                    ) from None
                if not told:
                    logger.warning("cache build: waiting for build pid %s to finish writing %s", holder, cache_dir)
                    told = True
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        checkpoint("locked")
        yield
    finally:
        os.close(fd)  # releases the lock


def served_version(cache_dir: Path) -> str | None:
    """The version manifest.json names now, or None (no cache yet, or an unreadable manifest)."""
    try:
        return read_manifest(cache_dir).version
    except CacheError:
        return None


@contextlib.contextmanager
def writing(cache_dir: Path) -> Iterator[None]:
    """Turn an OS error while writing a version (a full disk, a file-size limit, no permission) into CacheBuildError.

    The message names the error, says that nothing was committed and which version still serves.
    """
    try:
        yield
    except OSError as exc:
        current = served_version(cache_dir)
        still = f"manifest.json still names version {current}" if current else "no version was committed"
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        raise CacheBuildError(
            f"cache build failed while writing into {cache_dir}: {exc.strerror or exc}{where}; "
            f"{space_facts(cache_dir)}. "
            f"Nothing was committed: {still}. Free disk space (or raise the file-size limit), then build again"
        ) from exc


def space_facts(cache_dir: Path) -> str:
    """What limits writing here: the free space of the file system and this process's file-size limit."""
    facts = []
    with contextlib.suppress(OSError):
        facts.append(f"{shutil.disk_usage(cache_dir).free / 2**20:,.0f} MiB free on its file system")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        facts.append(f"this process may write at most {limit} bytes per file (ulimit -f)")
    return "; ".join(facts) or "no disk facts available"


def export_header(meta: BuildInfo, version: str) -> dict[str, Any]:
    """The settings line of an exported CSV: what the list is and which cache version it came from."""
    return {
        "cache_version": version,
        "dataset": meta.dataset or "",
        "ranker": meta.ranker,
        "n": meta.n,
        "max_exposures": "uncapped" if meta.allocation.max_exposures is None else meta.allocation.max_exposures,
        "engine": meta.engine.name,
    }


def export_original(
    recs: Recommendations, version_dir: Path, fmt: str, header: Mapping[str, Any] | None = None
) -> Path:
    """Write the original project's layout (product_id, customer_id, score, rank) as CSV or Parquet."""
    return export_slices(audience_batches(recs), version_dir, fmt, header)


def export_slices(
    slices: Iterable[pa.Table], version_dir: Path, fmt: str, header: Mapping[str, Any] | None = None
) -> Path:
    """Write audience slices in the original project's layout (product_id, customer_id, score, rank).

    CSV goes through `recsys.exports` (spreadsheet-safe text cells, `header` as ``# key: value`` lines, UTF-8 BOM).
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(
            f"cache export must be null, 'csv' or 'parquet', got {fmt!r} (params/cache.yaml: cache.export)"
        )
    batches = (t.select(["product_id", "customer_id", "score", "rank"]) for t in slices)
    path = version_dir / f"{EXPORT_STEM}.{fmt}"
    if fmt == "parquet":
        write_parquet_atomic(batches, path)
        return path
    return write_csv_batches(batches, path, header)


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
    lock_wait_s: float = LOCK_WAIT_S,
    reasons: Callable[[np.ndarray], Extras] | None = None,
) -> CacheManifest:
    """Write a new version directory (audience.parquet + lookup arrays), then (last, atomically) manifest.json.

    `recs` are the served audiences, `candidates` every product's own ranking to the candidate depth (same products);
    `reasons(customer_vocab)` gives the reason arrays (``recsys.cache.facts``) aligned with the version's customers.
    Under the build lock (`build_lock`); an OS error while writing raises CacheBuildError and leaves the served
    version as it was (`writing`).
    """
    check_export(export)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    recs = sort_by_product(recs)
    arrays = lookup_arrays(recs, fallback, sort_by_product(candidates))
    extras = reasons(arrays["customer_vocab"]) if reasons is not None else None
    with build_lock(cache_dir, lock_wait_s), writing(cache_dir):
        remove_stale(cache_dir)
        tmp = lookup_tmp_dir(cache_dir)
        try:
            audience_sha = write_parquet_atomic(audience_batches(recs), tmp / AUDIENCE_NAME)
            checkpoint("audience-written")
            version = cache_version(audience_sha, arrays, extras)
            target = cache_dir / f"{LOOKUP_PREFIX}{version}"
            reuse = target.is_dir() and version_matches(target, version)
            if not reuse:
                for i, key in enumerate(LOOKUP_ARRAYS):
                    save_lookup_array(tmp, key, arrays[key])
                    if i == len(LOOKUP_ARRAYS) // 2:
                        checkpoint("arrays-partly-written")
                if extras is not None:
                    extras.write(tmp)
            lookup_dir = commit_lookup_dir(tmp, cache_dir, version, reuse=reuse)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        exported = (
            export_original(recs, cache_dir / lookup_dir, export, export_header(meta, version)) if export else None
        )
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
    """Write manifest.json (the commit point) for a committed version dir, prune old dirs; return the manifest.

    The one manifest writer of both engines: the build facts (`meta`), the exposure metrics, what the arrays hold
    and the size and CRC-32 of every file of the version dir (checked by `recsys.cache.lookup` before serving).
    """
    sizes = np.diff(arrays["offsets"])
    counts = CacheCounts(
        interactions=meta.counts.interactions,
        customers=meta.counts.customers,
        catalogue=meta.counts.catalogue,
        new_catalogue=meta.counts.new_catalogue,
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
            audience=f"{lookup_dir}/{AUDIENCE_NAME}",
            audience_sha256=audience_sha,
            export=f"{lookup_dir}/{exported.name}" if exported else None,
            checksums=dir_checksums(cache_dir / lookup_dir),
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
    if meta is not None and meta.method in ("affinity", "neighbours"):
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
