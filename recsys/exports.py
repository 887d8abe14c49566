"""Every CSV the project writes for people goes through here: spreadsheet-safe cells and a settings header.

Minimal version written on branch ``campaigns`` with the API agreed for the shared module (issue 22's helper owns
it and may replace this file wholesale): ``safe_frame``, ``csv_text``, ``write_csv``, ``read_csv``.

- **CSV injection (OWASP).** A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
  evaluated as a formula by spreadsheets; such cells are written with a leading single quote. Numeric columns
  stay numeric.
- **Settings header.** ``# key: value`` lines before the column header carry the settings and the cache version
  the list was made with (a download travels without a sidecar); ``read_csv`` returns them as a dict.
- **Encoding.** UTF-8 with a byte-order mark (``bom=True``), so spreadsheets read Arabic names correctly.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import pandas as pd

DANGEROUS_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"
_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
Header = Mapping[str, Any] | None


def neutralise(text: str) -> str:
    """One text cell made inert for spreadsheets: a leading ``'`` when it starts with a dangerous character."""
    return "'" + text if text.startswith(DANGEROUS_PREFIXES) else text


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells are neutralised (numeric columns unchanged)."""
    out = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
            out[name] = col
        else:
            out[name] = col.map(lambda v: neutralise(v) if isinstance(v, str) else v).astype(object)
    return pd.DataFrame(out, index=frame.index)


def header_text(header: Header) -> str:
    """The ``# key: value`` lines of `header`; a bad key or a multi-line value raises ValueError."""
    lines = []
    for key, value in dict(header or {}).items():
        text = "" if value is None else str(value)
        if not _KEY.fullmatch(str(key)):
            raise ValueError(f"CSV header key {key!r} must match [A-Za-z0-9_.-]+")
        if "\n" in text or "\r" in text:
            raise ValueError(f"CSV header value of {key!r} must be one line, got {text!r}")
        lines.append(f"# {key}: {text}\n")
    return "".join(lines)


def csv_text(frame: pd.DataFrame, header: Header = None) -> str:
    """`frame` as CSV text (no index, ``\\n`` line ends), text cells neutralised, after the header lines."""
    return header_text(header) + safe_frame(frame).to_csv(index=False, lineterminator="\n")


def write_csv(frame: pd.DataFrame, target: Path | str | IO[str], header: Header = None, *, bom: bool = True) -> None:
    """Write `frame` for people to a path (atomically) or an open text buffer."""
    text = (BOM if bom else "") + csv_text(frame, header)
    if not isinstance(target, str | Path):
        target.write(text)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_csv(source: Path | str | IO[str], **kwargs: Any) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a CSV written here: ``(frame, header)`` (BOM tolerated; cells as a spreadsheet shows them)."""
    if isinstance(source, str | Path):
        text = Path(source).read_text(encoding="utf-8-sig")
    else:
        text = source.read().removeprefix(BOM)
    header: dict[str, str] = {}
    lines = text.split("\n")
    count = 0
    for line in lines:
        key, sep, value = line[2:].partition(": ") if line.startswith("# ") else ("", "", "")
        if not sep or not _KEY.fullmatch(key):
            break
        header[key] = value
        count += 1
    body = "\n".join(lines[count:])
    frame = pd.read_csv(io.StringIO(body), **kwargs) if body.strip() else pd.DataFrame()
    return frame, header
