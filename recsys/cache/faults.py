"""Named points of the cache writers where a fault test can kill the build: ``RECSYS_CACHE_FAULT=kill:<point>``.

The writers call ``checkpoint(name)`` between the steps of a build (see ``POINTS``). Unset — always, outside
tests — it is one dictionary lookup. Set to ``kill:<point>``, the build SIGKILLs itself when it reaches that
point: nothing is flushed, no ``finally`` block runs, exactly as when the machine or an operator kills it.
tests/test_cache_faults.py uses it to check that a build killed at each point leaves the served version intact.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "RECSYS_CACHE_FAULT"
POINTS: tuple[str, ...] = (
    "locked",  # the build lock is held, nothing written yet
    "audience-written",  # audience.parquet complete in the temp version directory
    "arrays-partly-written",  # some lookup arrays written, others not
    "version-committed",  # lookup-<version>/ renamed into place, manifest.json not yet replaced
    "manifest-staged",  # the new manifest written to a temp file, not yet renamed over manifest.json
)


def checkpoint(name: str) -> None:
    """Kill this process with SIGKILL when ``RECSYS_CACHE_FAULT`` is ``kill:<name>``; otherwise do nothing."""
    if os.environ.get(FAULT_ENV) == f"kill:{name}":
        os.kill(os.getpid(), signal.SIGKILL)
