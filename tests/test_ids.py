"""recsys.data.ids: one set of id rules (kind, arrays, parsing) for every stage, importable without pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from recsys.data.ids import INT64_MAX, id_array, id_kind, in_int64, parse_id


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (np.array([3, 1], dtype=np.int32), "int"),
        (pd.Series([3, 1], dtype="int32"), "int"),
        (pd.Series([3, 1], dtype="Int64"), "int"),
        (pd.Index([3, 1]), "int"),
        ([3, 1], "int"),
        (pd.Series(["a", "b"], dtype="string[pyarrow]"), "str"),
        (np.array(["a", "b"]), "str"),
        (np.array(["a", 1], dtype=object), "str"),
        (["a", "b"], "str"),
    ],
)
def test_id_kind(values: object, kind: str) -> None:
    assert id_kind(values) == kind


def test_id_array_keeps_integers_and_turns_the_rest_into_str_objects() -> None:
    ints = id_array(pd.Series([7, 3], dtype="Int32"))
    assert ints.dtype == np.int32 and ints.tolist() == [7, 3]
    assert id_array(np.array([5, 6], dtype=np.int64)).dtype == np.int64
    for values in (pd.Series(["SKU1", "SKU2"], dtype="string[pyarrow]"), np.array(["SKU1", "SKU2"]), ["SKU1", "SKU2"]):
        arr = id_array(values)
        assert arr.dtype == object and arr.tolist() == ["SKU1", "SKU2"]
        assert all(type(v) is str for v in arr)
    kept = np.array(["x", "y"], dtype=object)
    assert id_array(kept) is kept  # object arrays already hold str ids: no copy


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        (101, "int", 101),
        (np.int32(101), "int", 101),
        ("101", "int", 101),
        (" -7 ", "int", -7),
        ("+5", "int", 5),
        ("1.5", "int", None),
        (1.0, "int", None),
        ("abc", "int", None),
        ("", "int", None),
        (True, "int", None),
        (None, "int", None),
        ("SKU101A", "str", "SKU101A"),
        (" SKU ", "str", " SKU "),  # strings are ids as given
        (101, "str", "101"),
        (np.int64(7), "str", "7"),
        (False, "str", None),
        (None, "str", None),
        (2.5, "str", None),
    ],
)
def test_parse_id(raw: object, kind: str, expected: object) -> None:
    got = parse_id(raw, kind)
    assert got == expected and type(got) is type(expected)


def test_int64_range() -> None:
    too_big = parse_id(str(INT64_MAX + 1), "int")
    assert too_big == INT64_MAX + 1 and not in_int64(INT64_MAX + 1) and in_int64(INT64_MAX)


def test_the_module_imports_without_pandas_or_pyarrow() -> None:
    code = "import sys, recsys.data.ids; print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]"
