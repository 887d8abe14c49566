"""The loaded cache and its hot reload: one immutable snapshot, swapped atomically when manifest.json changes.

Reload policy (documented choice): every worker polls ``os.stat(manifest.json)`` every
``reload_interval_s`` seconds (default 2 s; one syscall, no coordination between workers) and, when
the file's identity (inode, mtime, size) changes, opens the new version in a thread and swaps one
attribute. Cache writers write the new ``lookup-<version>/`` first and then atomically replace
``manifest.json``, so a changed manifest always points at complete arrays. A request reads the
snapshot once and uses only that object, so in-flight requests finish on the version they started
with; the old arrays stay mapped (even if a writer prunes their directory: unlinked files live on
while mapped) until the last reference goes. SIGHUP forces an immediate reload attempt (with several
workers `service.workers.Supervisor` forwards it to every worker). A failed reload keeps the old
snapshot serving and is recorded for /health; it is retried when the manifest changes again or on SIGHUP.

Before a version serves (at start-up or on reload) its files are checked against the manifest
(``recsys.cache.lookup.verify_files``: presence, sizes and CRC-32 with ``RECSYS_CACHE_VERIFY=checksum``, the
default), then the arrays' structure (``AudienceLookup.open``). A truncated array, a corrupted Parquet file or a
manifest that does not match its files is refused like an unreadable manifest: the old version keeps serving
and ``/health`` says ``degraded`` with the reason.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.cache.lookup import AudienceLookup, Verify
from recsys.cache.manifest import BUILD_HINT, MANIFEST_NAME, CacheManifest

logger = logging.getLogger("recsys.service")

Signature = tuple[int, int, int]
Opener = Callable[[Path], Any]
VERIFIED_ENV = "RECSYS_VERIFIED_MANIFEST"  # set by `python -m service` after its pre-flight checked every checksum


def signature_text(signature: Signature | None) -> str:
    """A manifest signature as the text `VERIFIED_ENV` holds."""
    return "" if signature is None else ":".join(str(part) for part in signature)


class CacheLoadError(RuntimeError):
    """The cache directory could not be opened; the message says what to do."""


@dataclass(frozen=True)
class Snapshot:
    """One loaded cache version: everything a request needs, never mutated after creation."""

    lookup: AudienceLookup
    version: str
    n: int
    id_kind: str
    customer_id_kind: str
    product_count: int
    manifest: CacheManifest
    loaded_at: datetime
    signature: Signature | None


@dataclass(frozen=True)
class ReloadError:
    """The most recent failed reload attempt (shown in /health until a later reload succeeds)."""

    at: datetime
    message: str


def manifest_signature(cache_dir: Path) -> Signature | None:
    """Identity of manifest.json (inode, mtime ns, size), or None when it does not exist."""
    try:
        st = os.stat(cache_dir / MANIFEST_NAME)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def open_snapshot(cache_dir: Path, opener: Opener | None = None, verify: Verify = "checksum") -> Snapshot:
    """Open the cache at `cache_dir` as a Snapshot; any failure becomes a CacheLoadError with a hint.

    The default opener is ``AudienceLookup.open`` with `verify` (every file's size, and CRC-32 with ``checksum``,
    against the manifest): a truncated or corrupted file or a manifest that does not match its files is refused.
    """
    if opener is None:
        opener = functools.partial(AudienceLookup.open, verify=verify)
    signature = manifest_signature(cache_dir)
    if signature is None:
        raise CacheLoadError(
            f"no cache at {cache_dir}: {MANIFEST_NAME} is missing; {BUILD_HINT}, "
            "or point RECSYS_CACHE_DIR at an existing cache directory"
        )
    try:
        lookup = opener(cache_dir)
        manifest: CacheManifest = lookup.manifest
        snapshot = Snapshot(
            lookup=lookup,
            version=manifest.version,
            n=int(lookup.n),
            id_kind=str(lookup.id_kind),
            customer_id_kind=manifest.id_kinds.customer_id,
            product_count=int(len(lookup.product_ids())),
            manifest=manifest,
            loaded_at=datetime.now(UTC),
            signature=signature,
        )
    except Exception as exc:  # the cache module owns the specific errors; all mean "not loadable"
        raise CacheLoadError(f"cache at {cache_dir} could not be opened: {type(exc).__name__}: {exc}") from exc
    if snapshot.id_kind not in {"int", "str"}:
        raise CacheLoadError(
            f"cache at {cache_dir} has unsupported id_kind {snapshot.id_kind!r} (expected 'int' or 'str')"
        )
    if snapshot.n < 1:
        raise CacheLoadError(f"cache at {cache_dir} has depth N={snapshot.n}; rebuild it with N >= 1")
    return snapshot


class CacheHolder:
    """Holds the current Snapshot and swaps it when the cache directory's manifest changes."""

    def __init__(self, cache_dir: Path, opener: Opener | None = None, verify: Verify = "checksum") -> None:
        """Remember where the cache lives and how to check it (`open_snapshot`); nothing is opened until `load()`."""
        self.cache_dir = Path(cache_dir)
        self._opener: Opener = opener or functools.partial(AudienceLookup.open, verify=verify)
        self._checked_opener: Opener | None = (
            functools.partial(AudienceLookup.open, verify="size") if opener is None and verify == "checksum" else None
        )
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._seen_signature: Signature | None = None
        self.last_error: ReloadError | None = None
        self.reloads = 0
        self.reload_failures = 0

    @property
    def snapshot(self) -> Snapshot:
        """The version serving right now (read once per request)."""
        if self._snapshot is None:
            raise RuntimeError("cache not loaded: CacheHolder.load() must run at start-up")
        return self._snapshot

    @property
    def loaded(self) -> bool:
        """True once a cache version is serving."""
        return self._snapshot is not None

    def load(self) -> Snapshot:
        """Open the cache for the first time; raises CacheLoadError (start-up must fail loudly).

        When the parent process has just checked this very manifest's files (`VERIFIED_ENV` names its signature),
        the workers check sizes only: every checksum is read once per start-up, not once per worker.
        """
        opener = self._opener
        verified = os.environ.get(VERIFIED_ENV)
        if (
            self._checked_opener is not None
            and verified
            and verified == signature_text(manifest_signature(self.cache_dir))
        ):
            opener = self._checked_opener
        with self._lock:
            snapshot = open_snapshot(self.cache_dir, opener)
            self._snapshot = snapshot
            self._seen_signature = snapshot.signature
        logger.info(
            "cache %s loaded from %s (%d products, N=%d)",
            snapshot.version,
            self.cache_dir,
            snapshot.product_count,
            snapshot.n,
        )
        return snapshot

    def check_for_update(self, force: bool = False) -> bool:
        """Swap in a new cache version if manifest.json changed (or `force`); True when a new version went live.

        A failure keeps the current version, records `last_error` and is not retried until the
        manifest changes again (no log spam every poll) or a forced check (SIGHUP) asks for it.
        """
        if not self._lock.acquire(blocking=False):
            return False  # another check (poll or SIGHUP) is already running
        try:
            signature = manifest_signature(self.cache_dir)
            if signature == self._seen_signature and not force:
                return False
            self._seen_signature = signature
            return self._try_swap()
        finally:
            self._lock.release()

    def _try_swap(self) -> bool:
        """Open the changed cache and make it current; on failure keep the old one and record why."""
        current = self._snapshot
        try:
            candidate = open_snapshot(self.cache_dir, self._opener)
        except CacheLoadError as exc:
            self.reload_failures += 1
            self.last_error = ReloadError(at=datetime.now(UTC), message=str(exc))
            logger.error(
                "cache reload failed, still serving version %s: %s", current.version if current else "none", exc
            )
            return False
        self.last_error = None
        if current is not None and candidate.version == current.version:
            self._snapshot = candidate  # same version re-written: refresh mapping, nothing new to announce
            return False
        self._snapshot = candidate
        self.reloads += 1
        logger.info(
            "cache reloaded: %s -> %s (%d products, N=%d)",
            current.version if current else "none",
            candidate.version,
            candidate.product_count,
            candidate.n,
        )
        return True
