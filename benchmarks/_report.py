"""What every benchmark script shares: its peak memory and how it prints and writes its JSON report."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

from recsys import config


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(report: dict[str, Any], name: str, output: Path | None = None, write: bool = True) -> Path | None:
    """Print the report as JSON and write it to `output` (default reports/benchmarks/<name>.json) unless told not to."""
    text = json.dumps(report, indent=2)
    print(text)
    if not write:
        return None
    path = output or (config.REPORTS_DIR / "benchmarks" / f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return path
