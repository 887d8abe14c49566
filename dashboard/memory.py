"""Memory a dashboard kernel hands back to the system (each open tab is a kernel: what one keeps, each visitor pays)."""

from __future__ import annotations


def release_unused_memory() -> None:
    """Hand memory freed after loading back to the system: pyarrow's pool and glibc's heap keep it otherwise (each
    open tab is a kernel, so what one keeps is paid per visitor)."""
    import ctypes

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
