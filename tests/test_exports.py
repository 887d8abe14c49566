"""CSV exports for people (recsys.exports): formulas neutralised, numbers kept, settings header, streaming."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from recsys.exports import (
    DANGEROUS_PREFIXES,
    csv_text,
    header_text,
    is_neutral,
    neutralise,
    read_csv,
    safe_frame,
    safe_table,
    write_csv,
    write_csv_batches,
)

HOSTILE = [
    '=HYPERLINK("http://example.invalid/x","click")',
    "+1",
    "-2+3",
    "@SUM(A1:A9)",
    "\tcmd",
    "\r=1+1",
    "عطر =1",  # Arabic name with an equals sign inside: harmless, kept as is
    "=عطر 300 مل",  # Arabic name starting with '=': neutralised
    "plain name",
    'a,b "quoted"',
]
SAFE = [
    "'" + HOSTILE[0],
    "'+1",
    "'-2+3",
    "'@SUM(A1:A9)",
    "'\tcmd",
    "'\r=1+1",
    "عطر =1",
    "'=عطر 300 مل",
    "plain name",
    'a,b "quoted"',
]


def hostile_frame() -> pd.DataFrame:
    """Product names as they might come from a marketplace log, in every text dtype, next to numbers."""
    n = len(HOSTILE)
    return pd.DataFrame(
        {
            "product_name": pd.array(HOSTILE, dtype="string"),
            "name_object": np.array(HOSTILE, dtype=object),
            "name_category": pd.Categorical(HOSTILE),
            "delta": np.linspace(-2.5, 2.0, n),
            "rank": np.arange(-3, n - 3, dtype=np.int64),
        }
    )


def test_neutralise_prefixes_exactly_the_owasp_characters() -> None:
    assert DANGEROUS_PREFIXES == ("=", "+", "-", "@", "\t", "\r")
    assert [neutralise(v) for v in HOSTILE] == SAFE
    assert neutralise("") == "" and neutralise("'=already") == "'=already"


def test_safe_frame_neutralises_text_columns_and_keeps_numbers_numeric() -> None:
    frame = hostile_frame()
    safe = safe_frame(frame)
    for column in ("product_name", "name_object", "name_category"):
        assert [str(v) for v in safe[column]] == SAFE, column
        assert is_neutral(safe[column]) and not is_neutral(frame[column])
    assert safe["delta"].dtype == np.float64 and (safe["delta"] == frame["delta"]).all()
    assert safe["rank"].dtype == np.int64 and safe["rank"].min() == -3
    assert frame["product_name"].iloc[0] == HOSTILE[0], "the input frame is not modified"


def test_csv_round_trip_with_hostile_names_and_a_settings_header(tmp_path: Path) -> None:
    frame = hostile_frame()
    header = {"cache_version": "abc123", "ranker": "content", "n": 10}
    path = tmp_path / "out" / "audience.csv"
    write_csv(frame, path, header)
    raw = path.read_bytes()
    assert raw.startswith("\ufeff# cache_version: abc123\n# ranker: content\n# n: 10\n".encode())
    back, got_header = read_csv(path, keep_default_na=False)
    assert got_header == {"cache_version": "abc123", "ranker": "content", "n": "10"}
    assert back["product_name"].tolist() == SAFE and back["name_category"].tolist() == SAFE
    assert back["delta"].tolist() == frame["delta"].tolist() and back["rank"].tolist() == frame["rank"].tolist()
    for line in raw.decode("utf-8-sig").split("\n")[len(header) + 1 :]:  # no data line starts like a formula
        assert not line.startswith(("=", "+", "@")), line
    assert not list(tmp_path.glob("out/.*")), "the temp file is gone"
    plain = pd.read_csv(path, skiprows=len(header), encoding="utf-8-sig", keep_default_na=False)
    assert plain["name_object"].tolist() == SAFE


def test_csv_text_and_buffers_match_the_file_bytes(tmp_path: Path) -> None:
    frame = hostile_frame()
    buffer = io.StringIO()
    write_csv(frame, buffer, {"k": "v"}, bom=False)
    assert buffer.getvalue() == csv_text(frame, {"k": "v"}) == header_text({"k": "v"}) + csv_text(frame)
    write_csv(frame, tmp_path / "a.csv", {"k": "v"}, bom=False)
    assert (tmp_path / "a.csv").read_bytes().decode("utf-8") == buffer.getvalue()


@pytest.mark.parametrize("header", [{"bad key": "v"}, {"k": "two\nlines"}, {"k": "cr\rinside"}])
def test_header_rejects_what_would_break_the_file(header: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="CSV header"):
        header_text(header)


def test_arrow_batches_stream_with_the_same_rule(tmp_path: Path) -> None:
    table = pa.table({"product_id": pa.array(HOSTILE), "score": pa.array(np.linspace(-1, 1, len(HOSTILE)))})
    safe = safe_table(table)
    assert safe.column("product_id").to_pylist() == SAFE
    assert safe.column("score").type == pa.float64() and safe.column("score") == table.column("score")
    dictionary = pa.table({"name": pa.array(HOSTILE).dictionary_encode()})
    assert safe_table(dictionary).column("name").to_pylist() == SAFE
    path = tmp_path / "batches.csv"
    write_csv_batches([table.slice(0, 4), table.slice(4)], path, {"cache_version": "v1"})
    back, header = read_csv(path, keep_default_na=False)
    assert header == {"cache_version": "v1"} and back["product_id"].tolist() == SAFE
    np.testing.assert_allclose(back["score"], table.column("score").to_numpy())
    plain = pacsv.read_csv(io.BytesIO(path.read_bytes()[len("\ufeff# cache_version: v1\n".encode()) :]))
    assert plain.column("product_id").to_pylist() == SAFE


def test_read_csv_without_a_header_and_with_a_data_row_starting_with_a_hash() -> None:
    text = "name,n\n# not a header line,1\n"
    back, header = read_csv(io.StringIO(text))
    assert header == {} and back["name"].tolist() == ["# not a header line"]
