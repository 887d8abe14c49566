"""Every CSV the project writes for people goes through here: spreadsheet-safe cells and a settings header.

**CSV injection (OWASP).** A spreadsheet evaluates a cell that starts with ``=``, ``+``, ``-`` or ``@``
(and, in some programs, one that starts with a tab or a carriage return) as a formula: a product name such
as ``=HYPERLINK("http://evil","click")`` taken from a marketplace log would run when a merchant opens the
export. Following the OWASP rule, a *text* cell starting with one of ``DANGEROUS_PREFIXES`` is written with
a single quote in front (``'=HYPERLINK(...)``), which spreadsheets show as text. Numeric columns are left
numeric (``-2.5`` in a float column stays a number); a text column holding numbers written as text
(string product ids such as ``-5``) is text, so it is quoted too: strip one leading ``'`` from such a cell
to get the original back (``read_csv`` here does not, on purpose: it returns what a spreadsheet shows).

**Settings header.** ``write_csv`` / ``csv_text`` can put ``# key: value`` lines before the column header:
the settings and cache version the list was made with, travelling inside the file (a download or an e-mail
attachment has no sidecar). ``read_csv`` returns ``(frame, header)``; with pandas directly, skip them:
``pd.read_csv(path, skiprows=len(header))`` (never ``comment="#"``, which would also cut data cells at a
``#``). Keys are ``[A-Za-z0-9_.-]+``; values are one line of text.

**Encoding.** Files are UTF-8 with a byte-order mark by default (``bom=True``), so spreadsheets read Arabic
product names correctly; ``read_csv`` accepts either.

One API for pandas frames (``safe_frame``, ``csv_text``, ``write_csv``) and one for Arrow batches streamed
to disk (``safe_table``, ``write_csv_batches``: large exports, never one frame in memory); both apply the
same rule (``DANGEROUS_PREFIXES``) and write files atomically (temp file, then ``os.replace``).
"""

from __future__ import annotations

import csv
import io
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

__all__ = [
    "DANGEROUS_PREFIXES",
    "csv_text",
    "header_text",
    "is_neutral",
    "neutralise",
    "read_csv",
    "safe_frame",
    "safe_table",
    "write_csv",
    "write_csv_batches",
]

DANGEROUS_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
_DANGEROUS_RE = "^[=+\\-@\t\r]"
_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
BOM = "\ufeff"
Header = Mapping[str, Any] | None


def neutralise(text: str) -> str:
    """One text cell made inert for spreadsheets: a leading ``'`` when it starts with a dangerous character."""
    return QUOTE + text if text.startswith(DANGEROUS_PREFIXES) else text


def _safe_series(values: pd.Series) -> pd.Series:
    """A text column with every dangerous cell prefixed (vectorised); other columns come back unchanged."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = values.cat.categories
        if cats.dtype.kind in "OU" or pd.api.types.is_string_dtype(cats.dtype):
            fixed = [neutralise(c) if isinstance(c, str) else c for c in cats]
            if fixed != list(cats):
                return values.cat.rename_categories(fixed)
        return values
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        hit = values.str.match(_DANGEROUS_RE).fillna(False).astype(bool)
        return values.where(~hit, QUOTE + values)
    if values.dtype == object:
        text = values.map(lambda v: isinstance(v, str))
        if not text.any():
            return values
        out = values.copy()
        out[text] = values[text].map(neutralise)
        return out
    return values


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells (object, string and categorical columns) are neutralised; numbers kept."""
    return pd.DataFrame({name: _safe_series(frame[name]) for name in frame.columns}, index=frame.index)


def safe_table(table: pa.Table) -> pa.Table:
    """An Arrow table whose string columns are neutralised (the same rule as `safe_frame`); others unchanged."""
    columns = []
    for col in table.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            hit = pc.fill_null(pc.match_substring_regex(col, _DANGEROUS_RE), False)
            col = pc.if_else(hit, pc.binary_join_element_wise(pa.scalar(QUOTE, col.type), col, ""), col)
        elif pa.types.is_dictionary(col.type):
            col = safe_table(pa.table({"c": pc.cast(col, col.type.value_type)})).column("c")
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)


def header_text(header: Header) -> str:
    """The ``# key: value`` lines for `header` (empty when None); a bad key or a multi-line value raises ValueError."""
    if not header:
        return ""
    lines = []
    for key, value in header.items():
        text = "" if value is None else str(value)
        if not _KEY.fullmatch(str(key)):
            raise ValueError(f"CSV header key {key!r} must match [A-Za-z0-9_.-]+")
        if "\n" in text or "\r" in text:
            raise ValueError(f"CSV header value of {key!r} must be one line, got {text!r}")
        lines.append(f"# {key}: {text}\n")
    return "".join(lines)


def csv_text(frame: pd.DataFrame, header: Header = None) -> str:
    """`frame` as CSV text after the ``# key: value`` lines: no index, ``\\n`` line ends, text cells neutralised.

    Every text cell is quoted (``csv.QUOTE_NONNUMERIC``), so a cell holding a carriage return or a line break
    stays one cell and no data line starts with ``#``; numbers are written bare.
    """
    body = safe_frame(frame).to_csv(index=False, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    return header_text(header) + body


def _atomic_text(path: Path, write: Any) -> Path:
    """Run `write(fh)` on a temp file next to `path` (UTF-8, newline as written), then replace `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_csv(frame: pd.DataFrame, target: Path | str | IO[str], header: Header = None, *, bom: bool = True) -> None:
    """Write `frame` for people: to a path (atomically) or an open text buffer; UTF-8 with BOM unless ``bom=False``."""
    text = (BOM if bom else "") + csv_text(frame, header)
    if isinstance(target, str | Path):
        _atomic_text(Path(target), lambda fh: fh.write(text))
    else:
        target.write(text)


def write_csv_batches(
    batches: Iterable[pa.Table], path: Path | str, header: Header = None, *, bom: bool = True
) -> Path:
    """Stream Arrow tables of one schema into one CSV for people (atomically), each batch neutralised on the way."""
    path = Path(path)
    prefix = (BOM if bom else "") + header_text(header)

    def write(fh: IO[str]) -> None:
        fh.write(prefix)
        fh.flush()
        writer: pacsv.CSVWriter | None = None
        sink = fh.buffer if hasattr(fh, "buffer") else None
        if sink is None:  # pragma: no cover - text files opened by _atomic_text always have a buffer
            raise TypeError("write_csv_batches needs a file with a binary buffer")
        try:
            for table in batches:
                table = safe_table(table)
                if writer is None:
                    writer = pacsv.CSVWriter(sink, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()

    return _atomic_text(path, write)


def read_csv(source: Path | str | IO[str], **kwargs: Any) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a CSV written here: ``(frame, header)``; the ``# key: value`` lines become `header` (BOM tolerated)."""
    if isinstance(source, str | Path):
        with Path(source).open(encoding="utf-8-sig", newline="") as fh:  # keep a quoted lone CR as it is
            text = fh.read()
    else:
        text = source.read()
        text = text.removeprefix(BOM)
    header: dict[str, str] = {}
    lines = text.split("\n")
    count = 0
    for line in lines:
        if not line.startswith("# "):
            break
        key, sep, value = line[2:].partition(": ")
        if not sep or not _KEY.fullmatch(key):
            break
        header[key] = value
        count += 1
    body = "\n".join(lines[count:])
    frame = pd.read_csv(io.StringIO(body), quoting=csv.QUOTE_MINIMAL, **kwargs) if body.strip() else pd.DataFrame()
    return frame, header


def is_neutral(values: Iterable[Any]) -> bool:
    """True when no text value starts with a dangerous character (what every exported text cell satisfies)."""
    return not any(isinstance(v, str) and v.startswith(DANGEROUS_PREFIXES) for v in np.asarray(list(values), object))
