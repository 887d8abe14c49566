"""Stream Spark's ranked Parquet (staging) into the audience cache through recsys.cache.build's writers.

Spark writes the ranked rows (product_id, rank, customer_id, score) range-partitioned and sorted by
(product_id, rank), one part file per partition. The driver reads the part files in partition order
with pyarrow, one record batch at a time, and

- re-slices them into the pandas engine's row groups (``PARQUET_ROW_GROUP`` rows) for
  ``write_parquet_atomic`` (same schema and construction: ``audience_slice``), and
- fills ``customers.npy`` / ``scores.npy`` of a new lookup directory in place (numpy memory maps),

so the driver holds one batch of rows plus the per-product arrays (product ids, offsets), never the
whole audience. The manifest (a ``recsys.cache.manifest.CacheManifest`` written by ``commit_manifest``), the
lookup directory commit and the export are recsys.cache.build's.
Every slice is checked against the per-product sizes computed by Spark (product order and ranks
1..n), so a mis-ordered staging output raises instead of writing a wrong cache.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recsys.arrays import offsets_of
from recsys.cache.lookup import AUDIENCE_NAME, LOOKUP_ARRAYS, SCORE_DTYPE
from recsys.cache.manifest import BuildInfo, CacheExposure, CacheManifest
from recsys.cache.writer import (
    LOCK_WAIT_S,
    PARQUET_ROW_GROUP,
    audience_slice,
    build_lock,
    cache_version,
    check_export,
    commit_lookup_dir,
    commit_manifest,
    export_header,
    export_slices,
    fixed_width,
    lookup_tmp_dir,
    remove_stale,
    save_lookup_array,
    write_parquet_atomic,
    writing,
)
from recsys.engines.spark.session import has_scheme, local_path

PART_FILE = re.compile(r"^part-(\d+)")


@dataclass(frozen=True)
class StagedAudience:
    """Where Spark wrote the ranked rows (each product's candidates, ranks 1..size), plus the small per-product and
    fallback arrays the driver needs; the served audiences are every list's first `n` rows."""

    uri: str
    n: int
    product_ids: np.ndarray
    sizes: np.ndarray  # candidates per product
    customer_dtype: np.dtype[Any]
    vocab: np.ndarray  # every ranked customer id, sorted (int64, or str objects)
    fallback_ids: np.ndarray
    fallback_scores: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        """CSR offsets of the products' candidate blocks."""
        return offsets_of(np.asarray(self.sizes, dtype=np.int64))

    @property
    def served_offsets(self) -> np.ndarray:
        """CSR offsets of the served audiences (each list's first n)."""
        return offsets_of(np.minimum(np.asarray(self.sizes, dtype=np.int64), self.n))

    @property
    def string_ids(self) -> bool:
        """True when customer ids are strings (stored as codes into the vocabulary)."""
        return self.vocab.dtype.kind not in "iu"


@dataclass(frozen=True)
class LookupFill:
    """Memory-mapped lookup arrays the stream fills in place: served customers/scores and the candidates."""

    customers: np.ndarray
    scores: np.ndarray
    candidate_customers: np.ndarray
    candidate_scores: np.ndarray
    index: pd.Index | np.ndarray  # the vocabulary to code customers with


def arrow_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for a staging URI (s3a:// is read as s3://)."""
    path = local_path(uri)
    if path is not None:
        return pafs.LocalFileSystem(), os.path.abspath(path)
    fixed = re.sub(r"^s3a://", "s3://", uri) if has_scheme(uri) else uri
    resolved: tuple[Any, str] = pafs.FileSystem.from_uri(fixed)
    return resolved


def part_files(uri: str) -> tuple[pafs.FileSystem, list[str]]:
    """Spark's part files under `uri`, in partition order."""
    fs, root = arrow_filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    parts = []
    for info in infos:
        match = PART_FILE.match(info.base_name)
        if info.is_file and match and info.base_name.endswith(".parquet"):
            parts.append((int(match.group(1)), info.path))
    return fs, [p for _, p in sorted(parts)]


def staged_batches(uri: str, rows: int = PARQUET_ROW_GROUP) -> Iterator[pa.RecordBatch]:
    """Record batches of the staged rows, in order (one part file open at a time)."""
    fs, files = part_files(uri)
    for path in files:
        with fs.open_input_file(path) as fh:
            reader = pq.ParquetFile(fh)
            yield from reader.iter_batches(batch_size=rows, columns=["product_id", "rank", "customer_id", "score"])


def ids_of(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Ids as numpy: integers keep their dtype, strings become an object array of str."""
    if pa.types.is_integer(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False))
    return np.asarray(column.to_pylist(), dtype=object)


def exact_slices(uri: str, rows: int = PARQUET_ROW_GROUP) -> Iterator[pa.Table]:
    """The staged rows re-sliced into tables of exactly `rows` rows (the last one shorter)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in staged_batches(uri, rows):
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending = rest.to_batches()
            held = rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def validated_slices(staged: StagedAudience) -> Iterator[tuple[int, pa.Table, np.ndarray, np.ndarray]]:
    """(first row, table, product row, rank) of the staged rows in exact slices, checked against the sizes."""
    offsets = staged.offsets
    total = int(offsets[-1])
    start = 0
    for table in exact_slices(staged.uri):
        stop = start + table.num_rows
        if stop > total:
            raise RuntimeError(f"Spark staging {staged.uri} holds more rows than the per-product sizes ({total})")
        entry = np.arange(start, stop, dtype=np.int64)
        block = np.searchsorted(offsets, entry, side="right") - 1
        ranks = entry - offsets[block] + 1
        got_pids = ids_of(table.column("product_id"))
        got_ranks = np.asarray(table.column("rank").to_numpy(), dtype=np.int64)
        if not (np.array_equal(got_pids, staged.product_ids[block]) and np.array_equal(got_ranks, ranks)):
            raise RuntimeError(
                f"Spark staging {staged.uri} is not sorted by (product_id, rank) with ranks 1..n near row {start}"
            )
        yield start, table, block, ranks
        start = stop
    if start != total:
        raise RuntimeError(f"Spark staging {staged.uri} holds {start} rows, the per-product sizes say {total}")


def customer_codes(index: pd.Index | np.ndarray, ids: np.ndarray) -> np.ndarray:
    """int32 codes of ids in the sorted vocabulary (a pd.Index for string ids, the int64 array for integers)."""
    if isinstance(index, pd.Index):
        return codes_of(index, ids)
    pos = np.searchsorted(index, ids)
    if len(pos) and (pos.max() >= len(index) or not np.array_equal(index[pos], ids)):
        raise RuntimeError("a ranked customer id is missing from the customer vocabulary")
    return pos.astype(np.int32)


def rechunk(tables: Iterable[pa.Table], rows: int = PARQUET_ROW_GROUP) -> Iterator[pa.Table]:
    """Tables of one schema re-sliced into tables of exactly `rows` rows (the last one shorter; none when empty)."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= rows:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, rows)
            pending, held = [merged.slice(rows)], merged.num_rows - rows
    if held:
        yield pa.concat_tables(pending)


def audience_stream(staged: StagedAudience, fill: LookupFill | None = None) -> Iterator[pa.Table]:
    """The served audiences (ranks <= n) in the pandas engine's row groups; optionally fill the lookup arrays."""
    served_offsets = staged.served_offsets

    def served() -> Iterator[pa.Table]:
        for start, table, block, ranks in validated_slices(staged):
            customers = ids_of(table.column("customer_id"))
            scores = np.asarray(table.column("score").to_numpy(zero_copy_only=False), dtype=np.float64)
            keep = ranks <= staged.n
            if fill is not None:
                codes = customer_codes(fill.index, customers)
                fill.candidate_customers[start : start + table.num_rows] = codes
                fill.candidate_scores[start : start + table.num_rows] = scores.astype(SCORE_DTYPE)
                pos = served_offsets[block[keep]] + ranks[keep] - 1
                fill.customers[pos] = codes[keep] if staged.string_ids else customers[keep]
                fill.scores[pos] = scores[keep].astype(SCORE_DTYPE)
            yield audience_slice(staged.product_ids[block[keep]], ranks[keep], customers[keep], scores[keep])

    empty = True
    for table in rechunk(served()):
        empty = False
        yield table
    if empty:
        empty_customers = np.zeros(0, dtype=object if staged.string_ids else staged.customer_dtype)
        yield audience_slice(staged.product_ids[:0], np.zeros(0, dtype=np.int64), empty_customers, np.zeros(0))


def codes_of(index: pd.Index, ids: np.ndarray) -> np.ndarray:
    """int32 codes of string ids in the sorted vocabulary (every id must be in it)."""
    codes = index.get_indexer(pd.Index(ids))
    if len(codes) and codes.min() < 0:
        raise RuntimeError("a ranked customer id is missing from the customer vocabulary")
    return codes.astype(np.int32)


def fsync_path(path: Path) -> None:
    """Flush a written file to disk."""
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def fill_lookup_dir(staged: StagedAudience, tmp: Path) -> str:
    """Write audience.parquet into the temp version dir `tmp` while filling its lookup arrays; return its sha256."""
    served, total = int(staged.served_offsets[-1]), int(staged.offsets[-1])
    dtype = np.dtype(np.int32) if staged.string_ids else staged.customer_dtype
    index: pd.Index | np.ndarray = (
        pd.Index(staged.vocab) if staged.string_ids else np.asarray(staged.vocab, dtype=np.int64)
    )
    names = ("customers", "scores", "candidate_customers", "candidate_scores")
    shapes = (served, served, total, total)
    dtypes = (dtype, np.dtype(SCORE_DTYPE), np.dtype(np.int32), np.dtype(SCORE_DTYPE))
    arrays = [
        np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=kind, shape=(size,))
        for name, kind, size in zip(names, dtypes, shapes, strict=True)
    ]
    fill = LookupFill(arrays[0], arrays[1], arrays[2], arrays[3], index)
    digest = write_parquet_atomic(audience_stream(staged, fill), tmp / AUDIENCE_NAME)
    for array in arrays:
        array.flush()
    del fill, arrays
    for name in names:
        fsync_path(tmp / f"{name}.npy")
    return digest


def small_arrays(staged: StagedAudience) -> dict[str, np.ndarray]:
    """Every lookup array but the four the stream fills (product ids, offsets, vocabulary, cold_start, fallback)."""
    fallback_ids = np.asarray(staged.fallback_ids)[: staged.n]
    if staged.string_ids:
        vocab = fixed_width(np.asarray(staged.vocab, dtype=object))
        g_customers = codes_of(pd.Index(staged.vocab), np.asarray(fallback_ids, dtype=object))
    else:
        vocab = np.asarray(staged.vocab, dtype=np.int64)
        g_customers = np.asarray(fallback_ids, dtype=staged.customer_dtype)
    return {
        "product_ids": fixed_width(staged.product_ids),
        "offsets": staged.served_offsets,
        "customer_vocab": vocab,
        "cold_start": np.zeros(len(staged.product_ids), dtype=bool),
        "basis": np.zeros(len(staged.product_ids), dtype=np.uint8),  # every product has fit rows: `history`
        "global_customers": g_customers,
        "global_scores": np.asarray(staged.fallback_scores, dtype=SCORE_DTYPE)[: staged.n],
        "candidate_offsets": staged.offsets,
    }


def write_staged_cache(
    staged: StagedAudience,
    cache_dir: Path,
    meta: BuildInfo,
    exposure: Callable[[Mapping[str, np.ndarray]], CacheExposure],
    *,
    export: str | None = None,
    keep: int = 2,
    lock_wait_s: float = LOCK_WAIT_S,
) -> CacheManifest:
    """Write a new version dir (audience.parquet + lookup arrays) and (last, atomically) manifest.json from staging.

    Returns the manifest. `exposure` computes the manifest's exposure metrics from the written (memory-mapped)
    lookup arrays. Under the pandas writer's build lock and error handling (`build_lock`, `writing`).
    """
    check_export(export)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(cache_dir, lock_wait_s), writing(cache_dir):
        remove_stale(cache_dir)
        tmp = lookup_tmp_dir(cache_dir)
        try:
            digest = fill_lookup_dir(staged, tmp)
            for key, array in small_arrays(staged).items():
                save_lookup_array(tmp, key, array)
            written = {key: np.load(tmp / f"{key}.npy", mmap_mode="r") for key in LOOKUP_ARRAYS}
            version = cache_version(digest, written)
            del written
            lookup_dir = commit_lookup_dir(tmp, cache_dir, version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        arrays = {key: np.load(cache_dir / lookup_dir / f"{key}.npy", mmap_mode="r") for key in LOOKUP_ARRAYS}
        facts = exposure(arrays)
        exported = (
            export_slices(audience_stream(staged), cache_dir / lookup_dir, export, export_header(meta, version))
            if export
            else None
        )
        return commit_manifest(
            cache_dir,
            arrays,
            meta,
            facts,
            version=version,
            lookup_dir=lookup_dir,
            audience_sha=digest,
            exported=exported,
            keep=keep,
        )
