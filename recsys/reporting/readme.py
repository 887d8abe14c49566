"""Generated blocks of README.md: the text between a start and an end marker is rewritten by the code that owns it.

Owners: the summary stage (``recsys.reporting.summary``: the findings), ``python -m recsys.reporting.stages`` (which
stages a params change reruns, from dvc.yaml), ``benchmarks/bench_pipeline.py`` and ``benchmarks/bench_dashboard.py``
(measured times and memory). Everything outside the markers is left byte for byte.
"""

from __future__ import annotations

from pathlib import Path


def block(start: str, body: str, end: str) -> str:
    """The markers around a generated body (blank lines inside, so Markdown renders the body as its own blocks)."""
    return f"{start}\n\n{body.strip()}\n\n{end}"


def replace_block(path: Path, start: str, end: str, body: str) -> bool:
    """Rewrite the text between `start` and `end` in `path` with `body`; False (file untouched) without the markers."""
    text = path.read_text(encoding="utf-8")
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        return False
    new = text[:i] + block(start, body, end) + text[j + len(end) :]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return True


def read_block(path: Path, start: str, end: str) -> str | None:
    """The body between the markers (stripped), None when the markers are missing."""
    text = path.read_text(encoding="utf-8")
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        return None
    return text[i + len(start) : j].strip()
