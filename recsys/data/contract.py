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

Integers are narrowed to int32 when every value fits; float-coded integer ids (``17850.0``, as a
float column with missing values stores them) are integers too. IDs are never assumed to be
integers downstream: SKU codes such as ``85123A`` (or a non-integer ``1.5``) make the column a
string column.

A source is described by a ``SourceSpec``: a preset, or a preset with some of its keys replaced
(``source_spec_from_params``). Row filters (``RowFilter``) set aside rows that fail a condition on
any source column, with their own quarantine reason, before the contract's own checks.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recsys.config import check_keys

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


# Reasons the contract itself gives to a set-aside row (row filters add their own, listed first).
REJECT_REASONS: tuple[str, ...] = (
    "missing_customer",
    "missing_product",
    "missing_event",
    "unknown_event",
    "excluded_event",
    "bad_date",
    "duplicate",
)
FILTER_OPS: tuple[str, ...] = (">", ">=", "<", "<=", "==", "!=", "startswith", "not_startswith", "in", "not_in")
NUMERIC_OPS: frozenset[str] = frozenset({">", ">=", "<", "<="})
NEGATIVE_OPS: frozenset[str] = frozenset({"!=", "not_startswith", "not_in"})  # a missing value satisfies these
SOURCE_KEYS: tuple[str, ...] = (
    "path",
    "preset",
    "mapping",
    "event_map",
    "constant_event",
    "date_format",
    "timezone",
    "filters",
)
FILTER_KEYS: tuple[str, ...] = ("column", "op", "value", "reason")


class DataContractError(ValueError):
    """Raised when an input cannot be read into the canonical table; the message says what to do."""


@dataclass(frozen=True)
class RowFilter:
    """Keep a row only when `column op value` holds; otherwise set it aside with `reason`.

    Values are compared after trimming white space: numerically for >, >=, <, <= (and for == / !=
    when `value` is a number), as text otherwise. A missing or non-numeric value fails a positive
    condition and satisfies a negative one (!=, not_startswith, not_in): a missing invoice number
    is not a cancellation.
    """

    column: str
    op: str
    value: Any
    reason: str


def check_filter(f: RowFilter, where: str) -> None:
    """Raise a DataContractError naming `where` when a filter's op, value or reason is invalid."""
    if not isinstance(f.column, str) or not f.column.strip():
        raise DataContractError(f"{where}.column must be a source column name, got {f.column!r}")
    if f.op not in FILTER_OPS:
        raise DataContractError(f"{where}.op must be one of {list(FILTER_OPS)}, got {f.op!r}")
    is_number = isinstance(f.value, (int, float)) and not isinstance(f.value, bool)
    if f.op in NUMERIC_OPS and not is_number:
        raise DataContractError(f"{where}.value must be a number for op {f.op!r}, got {f.value!r}")
    if f.op in {"startswith", "not_startswith"} and not (isinstance(f.value, str) and f.value):
        raise DataContractError(f"{where}.value must be a non-empty text for op {f.op!r}, got {f.value!r}")
    if f.op in {"in", "not_in"} and not (isinstance(f.value, (list, tuple)) and f.value):
        raise DataContractError(f"{where}.value must be a non-empty list for op {f.op!r}, got {f.value!r}")
    if f.op in {"==", "!="} and not (is_number or isinstance(f.value, str)):
        raise DataContractError(f"{where}.value must be a number or a text for op {f.op!r}, got {f.value!r}")
    if not isinstance(f.reason, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", f.reason):
        raise DataContractError(f"{where}.reason must be a snake_case name such as 'cancelled', got {f.reason!r}")
    if f.reason in REJECT_REASONS:
        raise DataContractError(
            f"{where}.reason {f.reason!r} is a reason prepare gives itself; choose another name "
            f"(reserved: {list(REJECT_REASONS)})"
        )


def filters_from_params(items: Any, where: str = "source.filters") -> tuple[RowFilter, ...]:
    """Row filters from a params list of {column, op, value, reason} mappings; errors name the bad key."""
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise DataContractError(f"{where} must be a list of {{column, op, value, reason}} mappings, got {items!r}")
    out: list[RowFilter] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise DataContractError(f"{at} must be a mapping with keys {list(FILTER_KEYS)}, got {item!r}")
        check_keys(item, FILTER_KEYS, at, DataContractError)
        missing = [k for k in FILTER_KEYS if k not in item]
        if missing:
            raise DataContractError(f"{at} lacks key(s) {missing}; expected {list(FILTER_KEYS)}")
        value = tuple(item["value"]) if isinstance(item["value"], (list, tuple)) else item["value"]
        candidate = RowFilter(item["column"], item["op"], value, item["reason"])
        check_filter(candidate, at)
        out.append(candidate)
    return tuple(out)


def check_timezone(name: str, where: str = "source.timezone") -> str:
    """Return an IANA time-zone name after checking that it exists."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise DataContractError(
            f"{where} must be an IANA time zone such as 'UTC' or 'Europe/London', got {name!r}"
        ) from exc
    return name


@dataclass(frozen=True)
class SourceSpec:
    """How one raw log maps onto the canonical columns.

    `timezone` is the zone of date texts that carry no UTC offset (texts with one keep it; epoch
    numbers are UTC). `filters` are applied in order; the first one a row fails names its reason.
    """

    mapping: Mapping[str, str | Sequence[str] | None]
    event_map: Mapping[str, str | None] = field(default_factory=dict)
    constant_event: str | None = None
    date_format: str = "iso"
    name: str = "custom"
    timezone: str = "UTC"
    filters: tuple[RowFilter, ...] = ()

    def __post_init__(self) -> None:
        for i, f in enumerate(self.filters):
            check_filter(f, f"source.filters[{i}]")
        check_timezone(self.timezone)

    def reasons(self) -> tuple[str, ...]:
        """Every quarantine reason this source can give, filter reasons first (in order, once each)."""
        return tuple(dict.fromkeys([f.reason for f in self.filters] + list(REJECT_REASONS)))


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
    # UCI Online Retail (data/external/online_retail): one row per invoice line, every line a purchase.
    # InvoiceDate is UK wall-clock time (GMT in winter, BST in summer), read as Europe/London.
    "online_retail": SourceSpec(
        name="online_retail",
        mapping={
            "customer_id": "CustomerID",
            "product_id": "StockCode",
            "product_name": "Description",
            "event": None,
            "event_date": "InvoiceDate",
        },
        constant_event="purchased",
        timezone="Europe/London",
        filters=(
            RowFilter("InvoiceNo", "not_startswith", "C", "cancelled"),
            RowFilter("Quantity", ">", 0, "non_positive_quantity"),
            RowFilter(
                "StockCode",
                "not_in",
                ("POST", "DOT", "C2", "M", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"),
                "non_product",
            ),
        ),
    ),
}


def _norm(name: str) -> str:
    """Normalise a column name for matching: case- and whitespace-insensitive."""
    return re.sub(r"\s+", "_", name.replace("\ufeff", "").strip()).lower()


def source_spec_from_params(cfg: Mapping[str, Any]) -> SourceSpec:
    """Build a SourceSpec from the `source` block of params.

    `preset` names a starting spec (absent: case_study; `none` or null: no preset, so `mapping`
    must name customer_id, product_id and event_date). Every other key that is set (not null, not
    empty) replaces the preset's value for that key entirely: a custom `mapping` is the whole
    mapping, custom `filters` are all the filters.
    """
    check_keys(cfg, SOURCE_KEYS, "source", DataContractError)
    preset = cfg["preset"] if "preset" in cfg else "case_study"
    preset = "none" if preset is None else str(preset)
    if preset != "none" and preset not in PRESETS:
        raise DataContractError(
            f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}, or `none` with a full mapping"
        )
    base = PRESETS.get(preset, SourceSpec(mapping={}, name="none"))
    mapping = cfg.get("mapping") or None
    if mapping is not None:
        if not isinstance(mapping, Mapping):
            raise DataContractError(f"source.mapping must map canonical columns to source columns, got {mapping!r}")
        bad = sorted(set(mapping) - set(CANONICAL_COLUMNS))
        if bad:
            raise DataContractError(
                f"source.mapping has unknown canonical column(s) {bad}; expected some of {list(CANONICAL_COLUMNS)}"
            )
        lacking = [c for c in REQUIRED_COLUMNS if not mapping.get(c)]
        if lacking:
            raise DataContractError(
                f"source.mapping lacks {lacking}: a custom mapping replaces the preset's mapping entirely, "
                "so it must name the source column of customer_id, product_id and event_date"
            )
    elif preset == "none":
        raise DataContractError(
            "source.preset is none, so source.mapping must map customer_id, product_id and event_date to source columns"
        )
    event_map = cfg.get("event_map") or None
    if event_map is not None and not isinstance(event_map, Mapping):
        raise DataContractError(f"source.event_map must map source event values to canonical events, got {event_map!r}")
    filters = filters_from_params(cfg.get("filters")) if cfg.get("filters") else base.filters
    timezone = check_timezone(str(cfg["timezone"])) if cfg.get("timezone") else base.timezone
    custom = [k for k in ("mapping", "event_map", "constant_event", "date_format", "timezone", "filters") if cfg.get(k)]
    return SourceSpec(
        mapping=dict(mapping) if mapping is not None else dict(base.mapping),
        event_map=dict(event_map) if event_map is not None else dict(base.event_map),
        constant_event=cfg.get("constant_event") or base.constant_event,
        date_format=cfg.get("date_format") or base.date_format,
        name=preset + "".join(f"+{k}" for k in custom),
        timezone=timezone,
        filters=filters,
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
                missing.append("'event' (no mapping and no constant_event)")
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
            "input lacks required column(s): "
            + ", ".join(missing)
            + f"; columns found: {list(header)}. Set `source.mapping` in params/prepare.yaml "
            "(e.g. customer_id: CustomerID) or choose a preset: " + ", ".join(sorted(PRESETS))
        )
    return resolved


def resolve_filter_columns(header: Sequence[str], spec: SourceSpec) -> list[str]:
    """The actual source column read by each row filter (case/space-insensitive); a missing one is named."""
    by_norm = {_norm(h): h for h in header}
    out = []
    for i, f in enumerate(spec.filters):
        hit = by_norm.get(_norm(f.column))
        if hit is None:
            raise DataContractError(
                f"source.filters[{i}].column {f.column!r} is not a column of the input; columns found: {list(header)}"
            )
        out.append(hit)
    return out


def read_raw(path: Path, spec: SourceSpec) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Read the mapped source columns and the filters' columns as strings (pyarrow engine), without losing any row."""
    if not path.is_file():
        raise FileNotFoundError(
            f"input file {path} not found. Generate the default synthetic log with "
            "`recsys generate` (or `dvc repro generate`), or put the file at that path / set the data set's "
            "`datasets.<name>.source.path` in params/prepare.yaml (relative paths are read from the project root)."
        )
    header = read_header(path)
    cols = resolve_columns(header, spec)
    filter_cols = resolve_filter_columns(header, spec)
    needed = sorted({c for names in cols.values() for c in names} | set(filter_cols), key=header.index)
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
    """Integer ids as int32/int64 when every value is an integer or a float-coded one (`17850.0`); otherwise strings."""
    s = values.astype("string[pyarrow]").str.strip()
    if len(s) and s.str.fullmatch(r"[+-]?\d{1,18}(\.0*)?").all():
        ints = s.str.replace(r"\.0*$", "", regex=True).astype("int64").to_numpy()
        fits32 = ints.min() >= np.iinfo(np.int32).min and ints.max() <= np.iinfo(np.int32).max
        return pd.Series(ints.astype(np.int32 if fits32 else np.int64), index=values.index, name=values.name)
    return s.astype("string[pyarrow]")


def parse_dates(values: pd.Series, date_format: str, timezone: str = "UTC") -> pd.Series:
    """Parse raw date strings to UTC microseconds; unparseable values become NaT.

    Texts without a UTC offset are wall-clock times in `timezone`: at the autumn clock change an
    ambiguous time is read as standard time, at the spring change a non-existent one is moved
    forward to the first valid instant. Epoch numbers are UTC whatever the zone.
    """
    s = values.astype("string[pyarrow]").str.strip()
    if date_format in {"epoch_ms", "epoch_s"}:
        num = pd.to_numeric(s, errors="coerce")
        unit: Literal["ms", "s"] = "ms" if date_format == "epoch_ms" else "s"
        return pd.to_datetime(num, unit=unit, utc=True, errors="coerce").astype(DATE_DTYPE)
    fmt = "ISO8601" if date_format == "iso" else date_format
    if date_format == "iso":
        s = s.str.replace(r"\s*(UTC|Z)$", "+00:00", regex=True)
    if timezone == "UTC":
        return pd.to_datetime(s, utc=True, format=fmt, errors="coerce").astype(DATE_DTYPE)
    has_offset = s.str.contains(r"[+-]\d\d:?\d\d$", regex=True).fillna(False).to_numpy(dtype=bool)
    out = pd.Series(pd.NaT, index=s.index, dtype=DATE_DTYPE)
    if has_offset.any():
        out[has_offset] = pd.to_datetime(s[has_offset], utc=True, format=fmt, errors="coerce").astype(DATE_DTYPE)
    if (~has_offset).any():
        naive = pd.to_datetime(s[~has_offset], format=fmt, errors="coerce")
        local = naive.dt.tz_localize(timezone, ambiguous=np.zeros(len(naive), dtype=bool), nonexistent="shift_forward")
        out[~has_offset] = local.dt.tz_convert("UTC").astype(DATE_DTYPE)
    return out


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
