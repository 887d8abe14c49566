"""Data contract: the canonical interactions table and how raw logs map onto it.

Canonical table (one row per interaction, written by `recsys prepare` as Parquet):

============  =====================================  ==============================================
column        dtype                                  meaning
============  =====================================  ==============================================
customer_id   int32/int64 if every id is an integer, who acted; never null
              else string                            
product_id    int32/int64 if every id is an integer, what they acted on; never null
              else string                            
product_name  category (nullable)                    the product's name as logged (only metadata)
event         category of CANONICAL_EVENTS           purchased, cart, rating, wishlist,
                                                     search_keyword, view
event_date    datetime64[us, UTC] (nullable)         when; NaT = undated (see UNDATED_POLICY)
============  =====================================  ==============================================

Integers are narrowed to int32 when every value fits. IDs are never assumed to be
integers downstream: SKU codes such as ``85123A`` make the column a string column.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CANONICAL_COLUMNS: tuple[str, ...] = ("customer_id", "product_id", "product_name", "event", "event_date")
REQUIRED_COLUMNS: tuple[str, ...] = ("customer_id", "product_id", "event_date")
CANONICAL_EVENTS: tuple[str, ...] = ("purchased", "cart", "rating", "wishlist", "search_keyword", "view")
DATE_DTYPE: Final = "datetime64[us, UTC]"  # Final: type checkers see the literal dtype name

UNDATED_POLICY = (
    "Undated rows (every wishlist row of the case-study log) are kept. They count towards a user's "
    "history and features with no recency credit (decay weight 0 unless params say otherwise), they "
    "count as 'already interacted' for exclusion, and they never reach the test side of a temporal "
    "split: a split assigns them to the training side only when `undated_in_train` is true, else drops "
    "them from both sides (with a count)."
)

CASE_STUDY_HEADER: tuple[str, ...] = ("index", "product_id", "customer_id", "product_name", "Event_Date", "Event")


@dataclass(frozen=True)
class SourceSpec:
    """How one raw log maps onto the canonical columns."""

    mapping: Mapping[str, str | Sequence[str] | None]
    event_map: Mapping[str, str | None] = field(default_factory=dict)
    constant_event: str | None = None
    date_format: str = "iso"
    name: str = "custom"


PRESETS: dict[str, SourceSpec] = {
    "case_study": SourceSpec(
        name="case_study",
        mapping={
            "customer_id": "customer_id",
            "product_id": "product_id",
            "product_name": "product_name",
            "event": "event",
            "event_date": "event_date",
        },
    ),
    "retailrocket": SourceSpec(
        name="retailrocket",
        mapping={
            "customer_id": "visitorid",
            "product_id": "itemid",
            "product_name": None,
            "event": "event",
            "event_date": "timestamp",
        },
        event_map={"view": "view", "addtocart": "cart", "transaction": "purchased"},
        date_format="epoch_ms",
    ),
    "rees46": SourceSpec(
        name="rees46",
        mapping={
            "customer_id": "user_id",
            "product_id": "product_id",
            "product_name": ["category_code", "brand"],
            "event": "event_type",
            "event_date": "event_time",
        },
        event_map={"view": "view", "cart": "cart", "purchase": "purchased", "remove_from_cart": None},
    ),
}


class DataContractError(ValueError):
    """Raised when an input cannot be read into the canonical table; the message says what to do."""


def _norm(name: str) -> str:
    """Normalise a column name for matching: case- and whitespace-insensitive."""
    return re.sub(r"\s+", "_", name.replace("\ufeff", "").strip()).lower()


def source_spec_from_params(cfg: Mapping[str, Any]) -> SourceSpec:
    """Build a SourceSpec from the `source` block of params (preset + overrides)."""
    preset = cfg.get("preset") or "case_study"
    if preset not in PRESETS:
        raise DataContractError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)} or give a mapping")
    base = PRESETS[preset]
    mapping = dict(base.mapping)
    mapping.update(cfg.get("mapping") or {})
    event_map = dict(base.event_map)
    event_map.update(cfg.get("event_map") or {})
    return SourceSpec(
        mapping=mapping,
        event_map=event_map,
        constant_event=cfg.get("constant_event", base.constant_event),
        date_format=cfg.get("date_format") or base.date_format,
        name=preset if not cfg.get("mapping") else f"{preset}+mapping",
    )


def read_header(path: Path) -> list[str]:
    """Column names of a CSV or Parquet file."""
    if path.suffix.lower() in {".parquet", ".pq"}:
        return list(pq.read_schema(path).names)
    with path.open("rb") as fh:
        first = fh.readline()
    try:
        row = next(csv.reader([first.decode("utf-8-sig")]), None)
    except UnicodeDecodeError as exc:
        raise DataContractError(f"could not read {path}: the header is not UTF-8 text ({exc})") from exc
    if not row:
        raise DataContractError(f"{path} is empty: expected a CSV header line")
    return row


def resolve_columns(header: Sequence[str], spec: SourceSpec) -> dict[str, list[str]]:
    """Map each canonical column to the actual source column names (case/space-insensitive)."""
    by_norm = {_norm(h): h for h in header}
    resolved: dict[str, list[str]] = {}
    missing: list[str] = []
    for canon in CANONICAL_COLUMNS:
        src = spec.mapping.get(canon)
        if src is None:
            if canon == "event" and spec.constant_event is None:
                missing.append(f"'event' (no mapping and no constant_event)")
            resolved[canon] = []
            continue
        names = [src] if isinstance(src, str) else list(src)
        actual = []
        for name in names:
            hit = by_norm.get(_norm(name))
            if hit is None:
                missing.append(f"'{canon}' (looked for source column {name!r})")
            else:
                actual.append(hit)
        resolved[canon] = actual
    if missing:
        raise DataContractError(
            "input lacks required column(s): " + ", ".join(missing)
            + f"; columns found: {list(header)}. Set `source.mapping` in params/prepare.yaml "
            "(e.g. customer_id: CustomerID) or choose a preset: " + ", ".join(sorted(PRESETS))
        )
    return resolved


def read_raw(path: Path, spec: SourceSpec) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Read the mapped source columns as strings (pyarrow engine), without losing any row."""
    if not path.is_file():
        raise FileNotFoundError(
            f"input file {path} not found. Generate the default synthetic log with "
            "`recsys generate` (or `dvc repro prepare`), or put the case-study CSV at that path / set "
            "`source.path` in params/prepare.yaml."
        )
    header = read_header(path)
    cols = resolve_columns(header, spec)
    needed = sorted({c for names in cols.values() for c in names}, key=header.index)
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            table = pq.read_table(path, columns=needed)
            table = pa.table({c: table[c].cast(pa.string()) for c in needed})
        else:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(encoding="utf8", block_size=1 << 24),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    include_columns=needed,
                    column_types={c: pa.string() for c in needed},
                    strings_can_be_null=True,
                    null_values=[""],
                    quoted_strings_can_be_null=True,
                ),
            )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError, OSError) as exc:
        raise DataContractError(f"could not read {path}: {exc}") from exc
    return table.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow") if t == pa.string() else None), cols


def narrow_ids(values: pd.Series) -> pd.Series:
    """Integer ids as int32/int64 when every value is an integer; otherwise strings."""
    s = values.astype("string[pyarrow]").str.strip()
    if len(s) and s.str.fullmatch(r"[+-]?\d{1,18}").all():
        ints = s.astype("int64").to_numpy()
        fits32 = ints.min() >= np.iinfo(np.int32).min and ints.max() <= np.iinfo(np.int32).max
        return pd.Series(ints.astype(np.int32 if fits32 else np.int64), index=values.index, name=values.name)
    return s.astype("string[pyarrow]")


def parse_dates(values: pd.Series, date_format: str) -> pd.Series:
    """Parse raw date strings to UTC microseconds; unparseable values become NaT."""
    s = values.astype("string[pyarrow]").str.strip()
    if date_format in {"epoch_ms", "epoch_s"}:
        num = pd.to_numeric(s, errors="coerce")
        unit = "ms" if date_format == "epoch_ms" else "s"
        out = pd.to_datetime(num, unit=unit, utc=True, errors="coerce")
    elif date_format == "iso":
        s = s.str.replace(r"\s*(UTC|Z)$", "+00:00", regex=True)
        out = pd.to_datetime(s, utc=True, format="ISO8601", errors="coerce")
    else:
        out = pd.to_datetime(s, utc=True, format=date_format, errors="coerce")
    return out.astype(DATE_DTYPE)


def canonical_dtypes_ok(df: pd.DataFrame) -> None:
    """Raise if a frame does not follow the canonical contract (used by loaders and tests)."""
    missing = [c for c in CANONICAL_COLUMNS if c not in df.columns]
    if missing:
        raise DataContractError(f"not a canonical interactions table: missing column(s) {missing}")
    if str(df["event_date"].dtype) != DATE_DTYPE:
        raise DataContractError(f"event_date must be {DATE_DTYPE}, got {df['event_date'].dtype}")


def load_prepared(path: Path) -> pd.DataFrame:
    """Load the prepared canonical Parquet; a missing file says how to make it."""
    if not path.is_file():
        raise FileNotFoundError(
            f"prepared interactions {path} not found; run `recsys prepare` (or `dvc repro prepare`) first"
        )
    df = pd.read_parquet(path)
    canonical_dtypes_ok(df)
    return df
