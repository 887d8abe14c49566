"""Reading side of the audience cache: memory-mapped top-N lookups with numpy only (no pandas/pyarrow).

The service and the dashboard import this module; `recsys.cache.build` (the builder) writes what it reads and
`recsys.cache.manifest` types the manifest both sides share. See `recsys.cache.build` for the artifact layout.
"""

from __future__ import annotations

import mmap
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recsys import config
from recsys.basis import BASES
from recsys.cache.manifest import (
    BUILD_HINT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    CacheCorruptError,
    CacheError,
    CacheManifest,
    CacheNotFoundError,
    FileChecksum,
    corrupt,
    read_manifest,
)
from recsys.data.ids import id_kind, in_int64, parse_id

__all__ = [
    "AUDIENCE_NAME",
    "BUILD_HINT",
    "EXPORT_STEM",
    "FORMAT_VERSION",
    "CANDIDATE_ARRAYS",
    "LOOKUP_ARRAYS",
    "LOOKUP_PREFIX",
    "MANIFEST_NAME",
    "SCORE_DTYPE",
    "SERVED_ARRAYS",
    "AudienceLookup",
    "CacheCorruptError",
    "CacheError",
    "CacheManifest",
    "CacheNotFoundError",
    "Verify",
    "audience_path",
    "dir_checksums",
    "file_checksum",
    "read_manifest",
    "verify_files",
]

SCORE_DTYPE = np.float32  # ~7 significant digits: enough to order and show; halves the largest mapped array
AUDIENCE_NAME = "audience.parquet"
EXPORT_STEM = "audience_original"
LOOKUP_PREFIX = "lookup-"
DENSE_ID_LIMIT = 1 << 24  # integer customer ids below this are counted with one bincount (an int64 per id value)
CRC_CHUNK = 1 << 26  # bytes per zlib.crc32 call (it releases the GIL on large buffers)
PARQUET_MAGIC = b"PAR1"
Verify = Literal["checksum", "size"]
SERVED_ARRAYS: tuple[str, ...] = (  # the hot path: GET /recommend touches only these
    "product_ids",
    "offsets",
    "customers",
    "customer_vocab",
    "scores",
    "cold_start",
    "basis",
    "global_customers",
    "global_scores",
)
CANDIDATE_ARRAYS: tuple[str, ...] = (  # campaigns: every product's own ranking to the candidate depth
    "candidate_offsets",
    "candidate_customers",
    "candidate_scores",
)
LOOKUP_ARRAYS: tuple[str, ...] = SERVED_ARRAYS + CANDIDATE_ARRAYS  # every array of a version, in digest order
NAMES_PREFIX = "served_names_"  # file prefix of the served name ranker's index in a version (recsys.cache.facts)
BY_NAME_PREFIX = "by_name_"  # file prefix of the new-products model's index (POST /audiences/by-name, new products)


# ----------------------------------------------------------------------------------------------
# checksums: what the manifest records for every file of a version, and the check before serving it
# ----------------------------------------------------------------------------------------------


def positions(index: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position of each id in a sorted id array (int64 or fixed-width unicode), -1 when absent."""
    values = np.asarray(ids, dtype=np.int64) if index.dtype.kind in "iu" else np.asarray(ids).astype(str)
    if len(index) == 0 or len(values) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(index, values), len(index) - 1)
    return np.where(index[pos] == values, pos, -1).astype(np.int64)


def file_checksum(path: Path) -> FileChecksum:
    """Size and CRC-32 of a file (memory-mapped, read in large chunks)."""
    size = path.stat().st_size
    crc = 0
    if size:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            with memoryview(view) as buffer:
                for start in range(0, size, CRC_CHUNK):
                    crc = zlib.crc32(buffer[start : start + CRC_CHUNK], crc)
    return FileChecksum(bytes=size, crc32=f"{crc:08x}")


def dir_checksums(version_dir: Path) -> dict[str, FileChecksum]:
    """Checksums of every regular, non-hidden file of a version directory, by name."""
    files = sorted(p for p in Path(version_dir).iterdir() if p.is_file() and not p.name.startswith("."))
    return {p.name: file_checksum(p) for p in files}


def audience_path(cache_dir: Path) -> Path:
    """The served version's audience.parquet (inside its version directory), from manifest.json."""
    return Path(cache_dir) / read_manifest(Path(cache_dir)).files.audience


def verify_files(cache_dir: Path, manifest: CacheManifest, verify: Verify = "checksum") -> None:
    """Check the version's files against the manifest: present, the recorded size, and (``checksum``) the CRC-32.

    Generic over the manifest's list, so arrays a later format adds are checked too; every array this reader
    maps and the audience table must be listed. ``size`` skips the CRC (a stat per file: for very large caches
    whose start-up time matters more than catching a bit flip). Raises CacheCorruptError naming the file.
    """
    lookup_dir = cache_dir / manifest.lookup_dir
    listed = manifest.files.checksums
    unlisted = [f for f in (*[f"{key}.npy" for key in LOOKUP_ARRAYS], AUDIENCE_NAME) if f not in listed]
    if unlisted:
        raise corrupt(cache_dir, f"{manifest.lookup_dir} files {unlisted} are not in the manifest's checksums")
    for name, expected in listed.items():
        path = lookup_dir / name
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise corrupt(cache_dir, f"{manifest.lookup_dir}/{name} missing") from exc
        if size != expected.bytes:
            raise corrupt(
                cache_dir,
                f"{manifest.lookup_dir}/{name} is {size} bytes, the manifest says {expected.bytes} "
                "(truncated or replaced)",
            )
        if verify == "checksum":
            found = file_checksum(path).crc32
            if found != expected.crc32:
                raise corrupt(
                    cache_dir, f"{manifest.lookup_dir}/{name} has CRC-32 {found}, the manifest says {expected.crc32}"
                )
    audience = lookup_dir / AUDIENCE_NAME
    with audience.open("rb") as fh:
        head = fh.read(4)
        fh.seek(max(0, listed[AUDIENCE_NAME].bytes - 4))
        tail = fh.read(4)
    if head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
        raise corrupt(cache_dir, f"{manifest.lookup_dir}/{AUDIENCE_NAME} is not a Parquet file")


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def _load(cache_dir: Path, lookup_dir: Path, key: str) -> np.ndarray:
    """Memory-map one lookup array read-only."""
    path = lookup_dir / f"{key}.npy"
    try:
        arr: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
        return arr
    except FileNotFoundError as exc:
        raise corrupt(cache_dir, f"{path} missing") from exc
    except (OSError, ValueError, EOFError) as exc:
        raise corrupt(cache_dir, f"{path} unreadable: {exc}") from exc


def _validate(cache_dir: Path, a: Mapping[str, np.ndarray], manifest: CacheManifest) -> None:
    """Structural checks (shapes, dtypes, offsets, sorted ids) that are cheap on mapped arrays."""
    p = len(a["product_ids"])
    offsets = a["offsets"]
    checks = [
        (all(arr.ndim == 1 for arr in a.values()), "arrays must be one-dimensional"),
        (offsets.dtype == np.int64 and len(offsets) == p + 1, "offsets length != products + 1"),
        (len(a["cold_start"]) == p and a["cold_start"].dtype == bool, "cold_start length mismatch"),
        (len(a["basis"]) == p and a["basis"].dtype == np.uint8, "basis length or dtype mismatch"),
        (bool(np.all(a["basis"] < len(BASES))) if p else True, "basis codes out of range"),
        (
            a["customers"].dtype.kind in "iu" and a["global_customers"].dtype == a["customers"].dtype,
            "customer arrays must be integers of one dtype",
        ),
        (len(a["customers"]) == len(a["scores"]), "customers and scores differ in length"),
        (
            a["scores"].dtype == SCORE_DTYPE and a["global_scores"].dtype == SCORE_DTYPE,
            f"scores must be {np.dtype(SCORE_DTYPE).name}",
        ),
        (len(a["global_customers"]) == len(a["global_scores"]), "global fallback arrays differ in length"),
        (
            (manifest.id_kinds.customer_id == "str") == (a["customer_vocab"].dtype.kind == "U"),
            "customer id kind differs from the manifest",
        ),
        (len(a["candidate_offsets"]) == p + 1, "candidate_offsets length != products + 1"),
        (a["candidate_offsets"].dtype == np.int64, "candidate_offsets must be int64"),
        (a["candidate_customers"].dtype == np.int32, "candidate_customers must be int32 codes"),
        (
            len(a["candidate_customers"]) == len(a["candidate_scores"]),
            "candidate customers and scores differ in length",
        ),
        (a["candidate_scores"].dtype == SCORE_DTYPE, f"candidate scores must be {np.dtype(SCORE_DTYPE).name}"),
    ]
    for ok, detail in checks:
        if not ok:
            raise corrupt(cache_dir, detail)
    if offsets[0] != 0 or offsets[-1] != len(a["scores"]) or np.any(np.diff(offsets) < 0):
        raise corrupt(cache_dir, "offsets are not a valid CSR index")
    cand = a["candidate_offsets"]
    if cand[0] != 0 or cand[-1] != len(a["candidate_scores"]) or np.any(np.diff(cand) < 0):
        raise corrupt(cache_dir, "candidate_offsets are not a valid CSR index")
    if p > 1 and not np.all(a["product_ids"][1:] > a["product_ids"][:-1]):
        raise corrupt(cache_dir, "product ids are not strictly ascending")
    kind = "int" if a["product_ids"].dtype.kind in "iu" else "str"
    if kind != manifest.id_kinds.product_id:
        raise corrupt(cache_dir, "product id kind differs from the manifest")


class AudienceLookup:
    """Read-only, memory-mapped top-N audiences; `top` answers without pandas."""

    def __init__(self, cache_dir: Path, manifest: CacheManifest, arrays: Mapping[str, np.ndarray]) -> None:
        """Wrap validated arrays (use `AudienceLookup.open`)."""
        arrays = {k: v.view(np.ndarray) for k, v in arrays.items()}
        self.arrays: Mapping[str, np.ndarray] = arrays  # every mapped array by name (read-only)
        self.cached: dict[str, Any] = {}  # helpers built lazily over this version (e.g. recsys.reasons.Explainer)
        self.cache_dir = Path(cache_dir)
        self.manifest = manifest
        self.n = manifest.n
        self._ids = arrays["product_ids"]
        self.id_kind = id_kind(self._ids)
        self._offsets = arrays["offsets"]
        self._customers = arrays["customers"]
        self._vocab = arrays["customer_vocab"] if arrays["customer_vocab"].dtype.kind == "U" else None
        self._scores = arrays["scores"]
        self._cold = arrays["cold_start"]
        self._basis = arrays["basis"]
        self._g_customers = arrays["global_customers"]
        self._g_scores = arrays["global_scores"]
        self._index = arrays["customer_vocab"]  # every stored customer id, sorted: what candidate codes point into
        self._cand_offsets = arrays["candidate_offsets"]
        self._cand_customers = arrays["candidate_customers"]
        self._cand_scores = arrays["candidate_scores"]
        self.customer_kind = manifest.id_kinds.customer_id
        has_int_ids = self.id_kind == "int" and len(self._ids) > 0
        self._int_lo, self._int_hi = (int(self._ids[0]), int(self._ids[-1])) if has_int_ids else (0, -1)

    @classmethod
    def open(cls, cache_dir: Path | None = None, verify: Verify = "checksum") -> AudienceLookup:
        """Map the cache version named by manifest.json after checking its files (`verify_files`).

        Raises CacheError naming the file and the fix when the cache is missing, damaged or inconsistent.
        """
        cache_dir = Path(cache_dir) if cache_dir is not None else config.CACHE_DIR
        manifest = read_manifest(cache_dir)
        lookup_dir = cache_dir / manifest.lookup_dir
        if not lookup_dir.is_dir():
            raise corrupt(cache_dir, f"lookup directory {lookup_dir} missing")
        verify_files(cache_dir, manifest, verify)
        arrays = {key: _load(cache_dir, lookup_dir, key) for key in LOOKUP_ARRAYS}
        if manifest.reasons is not None:  # per-customer facts of the reasons, aligned with customer_vocab
            arrays.update({key: _load(cache_dir, lookup_dir, key) for key in manifest.reasons.facts})
            if any(len(arrays[key]) != len(arrays["customer_vocab"]) for key in manifest.reasons.facts):
                raise corrupt(cache_dir, "customer fact arrays differ in length from customer_vocab")
        _validate(cache_dir, arrays, manifest)
        return cls(cache_dir, manifest, arrays)

    def _find(self, product_id: Any) -> int:
        """Row of `product_id` in the sorted ids, or -1 when unknown (or of the wrong kind)."""
        key = parse_id(product_id, self.id_kind)
        if key is None or (isinstance(key, int) and not self._int_lo <= key <= self._int_hi):
            return -1
        i = int(np.searchsorted(self._ids, key))
        return i if i < len(self._ids) and self._ids[i] == key else -1

    def top(self, product_id: Any, n: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """(customer ids, scores, cold_start) of the best min(n, N) customers for a product."""
        n = max(0, min(int(n), self.n))
        i = self._find(product_id)
        if i < 0:
            return self._ids_of(self._g_customers[:n]), self._g_scores[:n], True
        a = int(self._offsets[i])
        b = min(int(self._offsets[i + 1]), a + n)
        return self._ids_of(self._customers[a:b]), self._scores[a:b], bool(self._cold[i])

    def basis(self, product_id: Any) -> str:
        """Why the product's audience is what it is (recsys.basis): history, name, ... (`names_unused` if unknown)."""
        i = self._find(product_id)
        return BASES[int(self._basis[i])] if i >= 0 else "names_unused"

    def top_global(self, n: int, exclude: Sequence[Any] = ()) -> tuple[np.ndarray, np.ndarray, bool]:
        """(customer ids, scores, True) of the global fallback's best n, the excluded customers skipped."""
        excluded = set(exclude)
        n = max(0, min(int(n), self.n))
        ids = self._ids_of(self._g_customers[: n + len(excluded)])
        keep = np.fromiter((c not in excluded for c in ids.tolist()), dtype=bool, count=len(ids))
        return ids[keep][:n], self._g_scores[: n + len(excluded)][keep][:n], True

    @property
    def names(self) -> Any:
        """The new-products model's index (recsys.features.name_index, loaded on first use), or None without one."""
        if "by_name" not in self.cached:
            directory = self.cache_dir / self.manifest.lookup_dir
            if (directory / f"{BY_NAME_PREFIX}meta.json").is_file():
                from recsys.features.name_index import load_name_index  # scipy and pyarrow: only when names are asked

                self.cached["by_name"] = load_name_index(directory, BY_NAME_PREFIX)
            else:
                self.cached["by_name"] = None
        return self.cached["by_name"]

    def _ids_of(self, stored: np.ndarray) -> np.ndarray:
        """Customer ids from stored values (the ids themselves, or codes into the vocabulary)."""
        return stored if self._vocab is None else self._vocab[stored]

    def exposure_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids ascending, count) of every customer in some audience: in how many product audiences (depth N) each is.

        One bincount over the stored customers (vocabulary codes for string ids; the ids themselves when they are
        non-negative and dense enough, else one sort with ``np.unique``).
        """
        stored = self._customers
        if self._vocab is not None:
            counts = np.bincount(stored, minlength=len(self._vocab))
            used = np.flatnonzero(counts)
            return self._vocab[used], counts[used].astype(np.int64)
        if len(stored) == 0:
            return stored[:0].copy(), np.zeros(0, dtype=np.int64)
        lo, hi = int(stored.min()), int(stored.max())
        if lo >= 0 and hi < max(4 * len(stored), DENSE_ID_LIMIT):
            counts = np.bincount(stored, minlength=hi + 1)
            used = np.flatnonzero(counts)
            return used.astype(stored.dtype), counts[used].astype(np.int64)
        ids, counts = np.unique(stored, return_counts=True)
        return ids, counts.astype(np.int64)

    # ------------------------------------------------------------------------------------------
    # candidates (campaigns): recsys.allocation.problem.CandidateSource
    # ------------------------------------------------------------------------------------------

    @property
    def candidate_depth(self) -> int:
        """Depth of the candidate lists (cache.candidates): the largest audience a campaign may ask for."""
        return int(self.manifest.candidate_depth)

    @property
    def n_customers(self) -> int:
        """Customers in the customer index (candidate codes run 0..n_customers-1)."""
        return int(len(self._index))

    def rows_of(self, product_ids: Sequence[Any]) -> np.ndarray:
        """Row of each product id in the cache (-1 when unknown or not an id of the cache's kind)."""
        return np.fromiter((self._find(pid) for pid in product_ids), dtype=np.int64, count=len(product_ids))

    def candidate_lists(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets, customer codes, scores) of the rows' candidate lists, each best first (copies)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self._cand_offsets[rows]
        sizes = self._cand_offsets[rows + 1] - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        gather = np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(starts - offsets[:-1], sizes)
        return offsets, self._cand_customers[gather], self._cand_scores[gather]

    def customer_codes(self, customer_ids: Sequence[Any]) -> np.ndarray:
        """Code of each customer id in the customer index (-1 when unknown or not an id of the cache's kind)."""
        parsed = [parse_id(c, self.customer_kind) for c in customer_ids]
        keep = [i for i, c in enumerate(parsed) if c is not None and (isinstance(c, str) or in_int64(c))]
        codes = np.full(len(parsed), -1, dtype=np.int64)
        if not keep or len(self._index) == 0:
            return codes
        values = np.asarray([parsed[i] for i in keep], dtype=np.int64 if self.customer_kind == "int" else str)
        pos = np.minimum(np.searchsorted(self._index, values), len(self._index) - 1)
        hit = self._index[pos] == values
        codes[np.asarray(keep, dtype=np.int64)[hit]] = pos[hit]
        return codes

    def customer_ids(self, codes: np.ndarray) -> np.ndarray:
        """Customer ids of index codes."""
        return np.asarray(self._index[np.asarray(codes, dtype=np.int64)])

    def known(self, product_id: Any) -> bool:
        """True when the product has its own audience in the cache."""
        return self._find(product_id) >= 0

    def product_ids(self) -> np.ndarray:
        """Every product id in the cache, ascending (read-only, memory-mapped)."""
        return self._ids

    def __len__(self) -> int:
        """Number of products in the cache."""
        return int(len(self._ids))
