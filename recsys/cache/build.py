"""The top-N audience cache: build it for every product, write it atomically, look it up in microseconds.

Artifact directory (default ``recsys.config.CACHE_DIR``):

- ``lookup-<version>/``: one version directory per cache version, holding everything that version serves:
- ``lookup-<version>/audience.parquet``: ``product_id, rank, customer_id, score`` (float32) sorted by product then
  rank. Same inputs give a byte-identical file (no timestamps inside; fixed compression and row groups).
- ``lookup-<version>/*.npy``: memory-mappable arrays (see ``LOOKUP_ARRAYS``): product ids sorted
  ascending (int64, or fixed-width unicode for string ids), CSR ``offsets``, ``customers`` (the
  integer customer ids themselves, or for string ids int32 codes into the sorted fixed-width
  ``customer_vocab``; empty for integer ids), ``scores`` (float32, as in the Parquet), per-product
  ``cold_start`` and the global fallback (``global_customers``, ``global_scores``) served for products unseen
  at build time.
- ``manifest.json``: a ``recsys.cache.manifest.CacheManifest`` (ranker + params, engine, input fingerprint,
  counts, N, the allocation settings (frequency cap, depth, candidates) and stats, exposure metrics before
  and after the cap, id kinds, version, ``lookup_dir`` and the size and CRC-32 of every file of it). It is the
  commit point: writers finish the version directory first (in a hidden temp dir, renamed into place), then
  replace the manifest with ``os.replace``; at most ``keep`` (default 2) version directories are kept (newest
  by modification time, the live one always), so the previous version stays available for a rollback.

Crash safety: a build holds an fcntl lock beside the directory (``build_lock``: a second build waits, then
refuses), removes what killed builds left behind (``remove_stale``), and turns a full disk or a file-size limit
into a ``CacheBuildError`` that names the still-served version (``writing``). A build killed at any point
(``recsys.cache.faults`` names the points the tests kill it at) leaves manifest.json naming a complete version.

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

import contextlib
import fcntl
import hashlib
import logging
import os
import resource
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import config
from recsys.allocation import AllocationParams, allocate, exposure_metrics, truncate
from recsys.allocation.exposure import DEFAULT_KS, returning_customers
from recsys.cache.faults import checkpoint
from recsys.cache.lookup import (
    AUDIENCE_NAME,
    EXPORT_STEM,
    LOOKUP_ARRAYS,
    LOOKUP_PREFIX,
    SCORE_DTYPE,
    dir_checksums,
)
from recsys.cache.manifest import (
    FORMAT_VERSION,
    AllocationInfo,
    AllocationStats,
    BuildInfo,
    CacheCounts,
    CacheError,
    CacheExposure,
    CacheFiles,
    CacheManifest,
    EngineInfo,
    ExposureSide,
    Fingerprint,
    IdKinds,
    InputCounts,
    fsync_dir,
    read_manifest,
    write_manifest,
)
from recsys.data.contract import CANONICAL_COLUMNS
from recsys.data.ids import id_array as as_id_array
from recsys.data.ids import id_kind
from recsys.exports import write_csv_batches
from recsys.rankers import Ranker, Recommendations, make_ranker
from recsys.rankers.base import parallel_ranking

PARQUET_ROW_GROUP = 1 << 20
ENCODE_CHUNK = 1 << 22
LOCK_WAIT_S = 600.0  # how long a build waits for another build of the same cache directory to finish writing
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"

logger = logging.getLogger(__name__)


class CacheBuildError(CacheError):
    """A build could not write or commit its version; the message says why and which version still serves."""


class CacheLockedError(CacheBuildError):
    """Another build holds the cache directory's build lock."""


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
    """True when the files of `version_dir` hash to `version` (an existing version directory is reused only then)."""
    try:
        arrays = {key: np.load(version_dir / f"{key}.npy", mmap_mode="r", allow_pickle=False) for key in LOOKUP_ARRAYS}
        return cache_version(fingerprint_file(version_dir / AUDIENCE_NAME), arrays) == version
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
    fallback: Recommendations,
    cache_dir: Path,
    meta: BuildInfo,
    exposure: CacheExposure,
    *,
    export: str | None = None,
    keep: int = 2,
    lock_wait_s: float = LOCK_WAIT_S,
) -> CacheManifest:
    """Write a new version directory (audience.parquet + lookup arrays), then (last, atomically) manifest.json.

    Under the build lock (`build_lock`); an OS error while writing raises CacheBuildError and leaves the served
    version as it was (`writing`).
    """
    check_export(export)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    recs = sort_by_product(recs)
    arrays = lookup_arrays(recs, fallback)
    with build_lock(cache_dir, lock_wait_s), writing(cache_dir):
        remove_stale(cache_dir)
        tmp = lookup_tmp_dir(cache_dir)
        try:
            audience_sha = write_parquet_atomic(audience_batches(recs), tmp / AUDIENCE_NAME)
            checkpoint("audience-written")
            version = cache_version(audience_sha, arrays)
            target = cache_dir / f"{LOOKUP_PREFIX}{version}"
            reuse = target.is_dir() and version_matches(target, version)
            if not reuse:
                for i, key in enumerate(LOOKUP_ARRAYS):
                    save_lookup_array(tmp, key, arrays[key])
                    if i == len(LOOKUP_ARRAYS) // 2:
                        checkpoint("arrays-partly-written")
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
    """Write manifest.json (the commit point) for a committed version dir, prune old dirs; return the manifest.

    The one manifest writer of both engines: the build facts (`meta`), the exposure metrics, what the arrays hold
    and the size and CRC-32 of every file of the version dir (checked by `recsys.cache.lookup` before serving).
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
            audience=f"{lookup_dir}/{AUDIENCE_NAME}",
            audience_sha256=audience_sha,
            export=f"{lookup_dir}/{exported.name}" if exported else None,
            checksums=dir_checksums(cache_dir / lookup_dir),
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
    lock_wait_s: float = LOCK_WAIT_S,
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
    return write_cache(recs, fallback, cache_dir, meta, facts, export=export, keep=keep, lock_wait_s=lock_wait_s)


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
