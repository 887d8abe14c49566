"""Prepare step: raw log → canonical Parquet, accounting for every input row."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import config
from recsys.data.contract import (
    CANONICAL_EVENTS,
    DATE_DTYPE,
    NEGATIVE_OPS,
    NUMERIC_OPS,
    UNDATED_POLICY,
    DataContractError,
    RowFilter,
    SourceSpec,
    narrow_ids,
    parse_dates,
    read_raw,
    resolve_filter_columns,
)

log = logging.getLogger(__name__)


@dataclass
class PrepareSummary:
    """What prepare did: every input row is either kept or rejected with a reason."""

    input: str
    source: str
    rows_in: int
    kept: int
    rejected: dict[str, int]
    undated_kept: int
    events_kept: dict[str, int]
    users: int
    products: int
    id_dtypes: dict[str, str]
    date_min: str | None
    date_max: str | None
    undated_policy: str = UNDATED_POLICY
    identity_holds: bool = field(init=False)

    def __post_init__(self) -> None:
        self.identity_holds = self.rows_in == self.kept + sum(self.rejected.values())


def _blank(s: pd.Series) -> np.ndarray:
    """True where a string value is null or only whitespace."""
    return (s.isna() | (s.str.strip() == "")).to_numpy(dtype=bool)


def _join_name(raw: pd.DataFrame, cols: list[str]) -> pd.Series:
    """The product name from one or several source columns (joined by a space)."""
    if not cols:
        return pd.Series(pd.NA, index=raw.index, dtype="string[pyarrow]")
    parts = [raw[c].fillna("").str.strip() for c in cols]
    name = parts[0]
    for p in parts[1:]:
        name = name.str.cat(p, sep=" ")
    name = name.str.strip()
    return name.mask(name == "")


def _events(
    raw: pd.DataFrame, cols: list[str], spec: SourceSpec
) -> tuple[pd.Series, np.ndarray, np.ndarray, np.ndarray]:
    """Normalised canonical events plus masks: missing, unknown, deliberately excluded."""
    n = len(raw)
    if not cols:
        ev = pd.Series([spec.constant_event] * n, index=raw.index, dtype="string[pyarrow]")
    else:
        ev = raw[cols[0]].str.strip().str.lower()
    missing = _blank(ev)
    lookup = {str(k).strip().lower(): v for k, v in spec.event_map.items()}
    excluded_keys = [k for k, v in lookup.items() if v is None]
    mapped = ev.replace({k: v for k, v in lookup.items() if v is not None})
    excluded = ev.isin(excluded_keys).to_numpy(dtype=bool) & ~missing
    unknown = ~mapped.isin(CANONICAL_EVENTS).to_numpy(dtype=bool) & ~missing & ~excluded
    return mapped, missing, unknown, excluded


def filter_passes(values: pd.Series, f: RowFilter) -> np.ndarray:
    """True where a raw text column satisfies a row filter (see RowFilter for the comparison rules)."""
    text = values.astype("string[pyarrow]").str.strip()
    missing = _blank(text)
    numeric = f.op in NUMERIC_OPS or (f.op in {"==", "!="} and not isinstance(f.value, str))
    if numeric:
        num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        value = float(f.value)
        compare = {
            ">": np.greater,
            ">=": np.greater_equal,
            "<": np.less,
            "<=": np.less_equal,
            "==": np.equal,
            "!=": np.not_equal,
        }[f.op]
        with np.errstate(invalid="ignore"):
            holds = compare(num, value) & ~np.isnan(num)
        if f.op == "!=":
            holds = holds | np.isnan(num)
        return np.asarray(holds, dtype=bool)
    if f.op in {"startswith", "not_startswith"}:
        hit = text.str.startswith(str(f.value)).fillna(False).to_numpy(dtype=bool)
    elif f.op in {"in", "not_in"}:
        hit = text.isin([str(v) for v in f.value]).to_numpy(dtype=bool)
    else:  # == / != as text
        hit = (text == str(f.value)).fillna(False).to_numpy(dtype=bool)
    hit = hit & ~missing
    passes: np.ndarray = ~hit if f.op in NEGATIVE_OPS else hit
    return passes


def canonicalise(raw: pd.DataFrame, cols: dict[str, list[str]], spec: SourceSpec) -> tuple[pd.DataFrame, pd.Series]:
    """Turn raw string columns into the canonical table; return it with a per-row reject reason ("" = kept).

    Row filters come first, in order; then the contract's checks (missing customer, product or
    event, unknown or excluded event, bad date); then duplicates of customer+product+event+date
    among the remaining rows (ids compared after narrowing, so `17850.0` duplicates `17850`).
    """
    n = len(raw)
    reason = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, name: str) -> None:
        sel = mask & (reason == "")
        reason[sel] = name

    for f, column in zip(spec.filters, resolve_filter_columns(list(raw.columns), spec), strict=True):
        flag(~filter_passes(raw[column], f), f.reason)
    cust = raw[cols["customer_id"][0]]
    prod = raw[cols["product_id"][0]]
    flag(_blank(cust), "missing_customer")
    flag(_blank(prod), "missing_product")
    event, ev_missing, ev_unknown, ev_excluded = _events(raw, cols["event"], spec)
    flag(ev_missing, "missing_event")
    flag(ev_unknown, "unknown_event")
    flag(ev_excluded, "excluded_event")
    date_raw = raw[cols["event_date"][0]]
    dates = parse_dates(date_raw, spec.date_format, spec.timezone)
    flag(dates.isna().to_numpy() & ~_blank(date_raw), "bad_date")

    ok = reason == ""
    frame = pd.DataFrame(
        {
            "customer_id": narrow_ids(cust[ok]),
            "product_id": narrow_ids(prod[ok]),
            "product_name": _join_name(raw.loc[ok], cols["product_name"]),
            "event": event[ok],
            "event_date": dates[ok],
        }
    )
    dup = frame.duplicated(subset=["customer_id", "product_id", "event", "event_date"], keep="first").to_numpy()
    ok_idx = np.flatnonzero(ok)
    reason[ok_idx[dup]] = "duplicate"
    frame = frame.loc[~dup]
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "product_id": frame["product_id"],
            "product_name": frame["product_name"].astype("category"),
            "event": pd.Categorical(frame["event"].astype(str), categories=list(CANONICAL_EVENTS)),
            "event_date": frame["event_date"].astype(DATE_DTYPE),
        }
    ).reset_index(drop=True)
    return out, pd.Series(reason, index=raw.index, name="reason")


def _write_atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write Parquet to a temp name and rename, so readers never see a half file."""
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False, compression="zstd")
    os.replace(tmp, path)


def prepare(
    input_path: Path,
    output_path: Path,
    spec: SourceSpec,
    quarantine_path: Path | None = None,
    summary_path: Path | None = None,
) -> PrepareSummary:
    """Read a raw log, write the canonical Parquet, the quarantine file and a summary JSON."""
    t0 = time.perf_counter()
    raw, cols = read_raw(Path(input_path), spec)
    table, reason = canonicalise(raw, cols, spec)
    rejected_mask = (reason != "").to_numpy()
    counts = reason[rejected_mask].value_counts()
    rejected = {r: int(counts.get(r, 0)) for r in spec.reasons()}

    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    quarantine_path = Path(quarantine_path or output_path.with_name("quarantine.parquet"))
    summary_path = Path(summary_path or output_path.with_name("prepare_summary.json"))
    quarantine = raw.loc[rejected_mask].copy()
    quarantine.insert(0, "source_row", np.flatnonzero(rejected_mask) + 1)
    quarantine["reason"] = reason[rejected_mask].astype("string[pyarrow]")
    _write_atomic_parquet(quarantine.reset_index(drop=True), quarantine_path)

    dated = table["event_date"].dropna()
    summary = PrepareSummary(
        input=config.relative(input_path),
        source=spec.name,
        rows_in=len(raw),
        kept=len(table),
        rejected=rejected,
        undated_kept=int(table["event_date"].isna().sum()),
        events_kept={str(e): int(c) for e, c in table["event"].value_counts(sort=False).items()},
        users=int(table["customer_id"].nunique()),
        products=int(table["product_id"].nunique()),
        id_dtypes={c: str(table[c].dtype) for c in ("customer_id", "product_id")},
        date_min=dated.min().isoformat() if len(dated) else None,
        date_max=dated.max().isoformat() if len(dated) else None,
    )
    summary_path.write_text(json.dumps(asdict(summary), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if table.empty:
        raise DataContractError(
            f"no valid rows in {input_path}: all {len(raw)} rows were rejected "
            f"({ {k: v for k, v in rejected.items() if v} }); "
            f"see {quarantine_path} and check the column mapping / event_map in params/prepare.yaml"
        )
    _write_atomic_parquet(table, output_path)
    log.info(
        "prepared %s in %.1f s: %d rows in, %d kept, rejected %s",
        input_path,
        time.perf_counter() - t0,
        len(raw),
        len(table),
        rejected,
    )
    return summary


def summary_dict(summary: PrepareSummary) -> dict[str, Any]:
    """The summary as a plain dict (for notebooks and JSON)."""
    return asdict(summary)
