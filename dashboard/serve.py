"""Serve the dashboard notebook with Voilà on 127.0.0.1 (`python -m dashboard`, `recsys dashboard`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

from dashboard.settings import DEFAULT_PORT, NOTEBOOK


def voila_command(port: int = DEFAULT_PORT, notebook: Path | None = None, cull_idle_s: int = 600) -> list[str]:
    """The argv that serves the dashboard with Voilà on 127.0.0.1:`port` (no browser; kernels of closed tabs culled)."""
    return [
        sys.executable,
        "-m",
        "voila",
        str(notebook or NOTEBOOK),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--port={int(port)}",
        "--MappingKernelManager.cull_interval=60",
        f"--MappingKernelManager.cull_idle_timeout={int(cull_idle_s)}",
        "--preheat_kernel=True",  # a kernel that already ran the notebook waits for the next visitor
        "--pool_size=1",
        "--VoilaKernelManager.fill_delay=3",  # refill the pool once the visitor's page has rendered, not during it
    ]


def serve(port: int = DEFAULT_PORT) -> NoReturn:
    """Replace this process with Voilà serving the dashboard; signals then reach Voilà directly."""
    print(f"dashboard: http://127.0.0.1:{int(port)}/ (Ctrl-C stops it)", file=sys.stderr, flush=True)
    cmd = voila_command(port)
    os.execv(cmd[0], cmd)
