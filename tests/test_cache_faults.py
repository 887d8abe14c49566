"""Faults of the cache and of the service over it: builds killed half-way (SIGKILL at every named point), a full
disk, two builds at once, and damaged versions the service must refuse while it keeps serving the old one.

Builds that must die or hit a limit run as real subprocesses (``python -c`` building a small cache); the rest runs
in process. Every assertion is about what a reader sees afterwards: which version manifest.json names, whether it
opens with its checksums, what /health says, and that no half-written version or temp file is left visible.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsys.cache.faults import FAULT_ENV, POINTS
from recsys.cache.lookup import LOOKUP_PREFIX, AudienceLookup, CacheCorruptError, audience_path
from recsys.cache.manifest import MANIFEST_NAME, CacheManifest, read_manifest
from recsys.cache.writer import build_lock, version_matches
from recsys.config import PROJ_ROOT
from service.state import CacheHolder
from service.testing import TINY_N, build_tiny_cache, expected_audiences, tiny_interactions

from _logs import random_log

DEADLINE_S = 120.0  # bound for one small build on a loaded machine; never asserted as a timing
BUILD_SCRIPT = """
import sys
from pathlib import Path
from recsys.cache.build import build_cache
from service.testing import TINY_N, tiny_interactions
build_cache(tiny_interactions(variant=int(sys.argv[2])), "activity", {"seed": 0}, Path(sys.argv[1]), n=TINY_N,
            lock_wait_s=float(sys.argv[3]))
print("built", flush=True)
"""


def build_process(
    cache_dir: Path, variant: int, *, lock_wait_s: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start a real build of the tiny cache (`variant`) into `cache_dir` in a subprocess (`env` added to ours)."""
    return subprocess.Popen(
        [sys.executable, "-c", BUILD_SCRIPT, str(cache_dir), str(variant), str(lock_wait_s)],
        cwd=PROJ_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for a build subprocess; its exit code and stderr."""
    _, err = proc.communicate(timeout=DEADLINE_S)
    return proc.returncode, err


def visible_versions(cache_dir: Path) -> list[Path]:
    """Version directories a reader could be pointed at (hidden temp and trash dirs excluded)."""
    return sorted(p for p in cache_dir.glob(f"{LOOKUP_PREFIX}*") if p.is_dir())


def leftovers(cache_dir: Path) -> list[str]:
    """Hidden temp entries in the cache dir and its version dirs (what a killed build leaves)."""
    found = [p for p in cache_dir.iterdir() if p.name.startswith(".")]
    found += [p for d in visible_versions(cache_dir) for p in d.iterdir() if p.name.startswith(".")]
    return sorted(p.name for p in found)


def assert_serves(
    cache_dir: Path, manifest: CacheManifest, expected: dict[object, list[tuple[object, float, int]]]
) -> None:
    """manifest.json names `manifest`'s version, it opens with full checksums, and it answers as expected."""
    assert read_manifest(cache_dir) == manifest
    lookup = AudienceLookup.open(cache_dir, verify="checksum")
    for pid, triples in expected.items():
        customers, scores, _ = lookup.top(pid, TINY_N)
        assert customers.tolist() == [c for c, _, _ in triples]
    for version_dir in visible_versions(cache_dir):  # every visible version is whole
        assert version_matches(version_dir, version_dir.name.removeprefix(LOOKUP_PREFIX)), version_dir


# ---------------------------------------------------------------------------------------------------
# builds that die, fill the disk, or run at once
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
def test_a_build_killed_at_any_point_leaves_the_served_version_intact(tmp_path: Path, point: str) -> None:
    cache_dir = tmp_path / "cache"
    served = build_tiny_cache(cache_dir, tiny_interactions(variant=0))
    expected = expected_audiences(cache_dir)
    holder = CacheHolder(cache_dir)
    holder.load()

    code, err = finish(build_process(cache_dir, 1, env={FAULT_ENV: f"kill:{point}"}))
    assert code == -signal.SIGKILL, err

    assert_serves(cache_dir, served, expected)
    holder.check_for_update(force=True)
    assert holder.snapshot.version == served.version and holder.last_error is None
    rebuilt = build_tiny_cache(cache_dir, tiny_interactions(variant=1))  # the next build succeeds and cleans up
    assert rebuilt.version != served.version and leftovers(cache_dir) == []
    assert_serves(cache_dir, rebuilt, expected_audiences(cache_dir))
    assert holder.check_for_update() and holder.snapshot.version == rebuilt.version


def test_a_full_disk_fails_clearly_and_loses_nothing(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    served = build_tiny_cache(cache_dir, tiny_interactions(variant=0))
    expected = expected_audiences(cache_dir)
    prepared = tmp_path / "interactions.parquet"
    random_log(n_rows=3000, n_users=300, n_products=80, seed=5).to_parquet(prepared)
    limit = 8192  # bytes per file: the lock file and small arrays fit, the audience table does not

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "build-cache",
            "--input",
            str(prepared),
            "--output",
            str(cache_dir),
            "--ranker",
            "activity",
            "--uncapped",
        ],
        cwd=PROJ_ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        preexec_fn=small_files,  # noqa: PLW1509  (the limit must apply to the child only)
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "cache build failed while writing into" in proc.stderr
    assert f"this process may write at most {limit} bytes per file" in proc.stderr
    assert f"manifest.json still names version {served.version}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_serves(cache_dir, served, expected)
    assert leftovers(cache_dir) == [] and [p.name for p in visible_versions(cache_dir)] == [served.lookup_dir]


def test_a_second_build_waits_for_the_lock_or_refuses(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    served = build_tiny_cache(cache_dir, tiny_interactions(variant=0))
    with build_lock(cache_dir):
        code, err = finish(build_process(cache_dir, 1, lock_wait_s=0.5))
        assert code != 0 and f"another build (pid {os.getpid()}) is writing the cache" in err
        assert read_manifest(cache_dir) == served
        waiting = build_process(cache_dir, 1, lock_wait_s=DEADLINE_S)
        # it cannot finish while we hold the lock
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=3.0)
    code, err = finish(waiting)
    assert code == 0 and "waiting for build pid" in err
    assert read_manifest(cache_dir).version != served.version


def test_two_builds_started_at_once_leave_one_whole_artifact(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    procs = [build_process(cache_dir, variant) for variant in (0, 1)]
    results = [finish(p) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    manifest = read_manifest(cache_dir)
    assert AudienceLookup.open(cache_dir, verify="checksum").manifest == manifest
    assert len(visible_versions(cache_dir)) == 2 and leftovers(cache_dir) == []
    for version_dir in visible_versions(cache_dir):
        assert version_matches(version_dir, version_dir.name.removeprefix(LOOKUP_PREFIX))


# ---------------------------------------------------------------------------------------------------
# damaged versions: the service refuses them and keeps serving
# ---------------------------------------------------------------------------------------------------


def truncate_array(cache_dir: Path, manifest: CacheManifest) -> str:
    path = cache_dir / manifest.lookup_dir / "customers.npy"
    path.write_bytes(path.read_bytes()[:-8])
    return "customers.npy is"


def flip_array_bits(cache_dir: Path, manifest: CacheManifest) -> str:
    path = cache_dir / manifest.lookup_dir / "scores.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # same size, different bytes: only the checksum sees it
    path.write_bytes(bytes(data))
    return "scores.npy has CRC-32"


def corrupt_parquet(cache_dir: Path, manifest: CacheManifest) -> str:
    path = audience_path(cache_dir)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = b"\0" * 16
    path.write_bytes(bytes(data))
    return "audience.parquet has CRC-32"


def mismatched_manifest(cache_dir: Path, manifest: CacheManifest) -> str:
    doc = json.loads((cache_dir / MANIFEST_NAME).read_text())
    doc["files"]["checksums"]["offsets.npy"]["bytes"] += 8
    tmp = cache_dir / "manifest.tmp"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, cache_dir / MANIFEST_NAME)
    return "offsets.npy is"


DAMAGES: dict[str, Callable[[Path, CacheManifest], str]] = {
    "truncated array": truncate_array,
    "flipped bits in an array": flip_array_bits,
    "corrupted parquet": corrupt_parquet,
    "manifest not matching its files": mismatched_manifest,
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_version_is_refused_and_the_old_one_keeps_serving(
    tmp_path: Path, make_client: Callable[..., TestClient], damage: str
) -> None:
    cache_dir = tmp_path / "cache"
    served = build_tiny_cache(cache_dir, tiny_interactions(variant=0))
    expected = expected_audiences(cache_dir)
    pid = next(iter(expected))
    with make_client(cache_dir) as client:  # polling off: reloads only when asked (SIGHUP's path)
        holder: CacheHolder = client.app.state.holder  # type: ignore[attr-defined]
        bad = build_tiny_cache(cache_dir, tiny_interactions(variant=1))
        reason = DAMAGES[damage](cache_dir, bad)
        with pytest.raises(CacheCorruptError, match=reason.split()[0]):
            AudienceLookup.open(cache_dir)
        assert holder.check_for_update(force=True) is False
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["cache"]["version"] == served.version
        assert reason in health["last_reload_error"]["message"] and str(tmp_path) not in json.dumps(health)
        body = client.get(f"/recommend/{pid}", params={"n": TINY_N}).json()
        assert body["model"] == served.version
        assert [r["customer_id"] for r in body["recommendations"]] == [c for c, _, _ in expected[pid]]

        fixed = build_tiny_cache(cache_dir, tiny_interactions(variant=1))  # the same content, rebuilt whole
        assert fixed.version == bad.version and version_matches(cache_dir / fixed.lookup_dir, fixed.version)
        assert holder.check_for_update(force=True) is True
        recovered = client.get("/health").json()
        assert recovered["status"] == "ok" and recovered["cache"]["version"] == fixed.version


def test_size_only_verification_skips_the_checksum(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    manifest = build_tiny_cache(cache_dir, tiny_interactions())
    flip_array_bits(cache_dir, manifest)
    with pytest.raises(CacheCorruptError, match="CRC-32"):
        AudienceLookup.open(cache_dir)
    assert AudienceLookup.open(cache_dir, verify="size").manifest == manifest
    truncate_array(cache_dir, manifest)
    with pytest.raises(CacheCorruptError, match="bytes, the manifest says"):
        AudienceLookup.open(cache_dir, verify="size")


def test_a_restored_older_manifest_rolls_back_to_its_version(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    old = build_tiny_cache(cache_dir, tiny_interactions(variant=0))
    old_expected = expected_audiences(cache_dir)
    saved = (cache_dir / MANIFEST_NAME).read_bytes()
    new = build_tiny_cache(cache_dir, tiny_interactions(variant=1))
    holder = CacheHolder(cache_dir)
    assert holder.load().version == new.version
    rollback = cache_dir / "manifest.rollback"
    rollback.write_bytes(saved)
    os.replace(rollback, cache_dir / MANIFEST_NAME)  # the README's rollback: put the old manifest back
    assert holder.check_for_update() and holder.snapshot.version == old.version
    assert_serves(cache_dir, old, old_expected)
    shutil.rmtree(cache_dir / new.lookup_dir)  # unused versions can go; the served one stays whole
    assert AudienceLookup.open(cache_dir).manifest.version == old.version
    assert np.array_equal(AudienceLookup.open(cache_dir).product_ids(), holder.snapshot.lookup.product_ids())
