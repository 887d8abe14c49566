"""Customer and product ids: one set of rules for every stage, with numpy only.

The service imports this module, so it must never import pandas or pyarrow (start-up RSS). Ids are
integers or strings, as the data contract types them (``int32`` or ``string``):

- ``id_kind``: ``'int'`` for an integer id array (numpy, or a pandas Series/Index/array, nullable
  integers included), else ``'str'``;
- ``id_array``: ids as a numpy array: integers keep their dtype, every other kind becomes an object
  array of Python ``str`` (numpy object arrays are taken as holding ``str`` ids already);
- ``parse_id``: one client-supplied id as the kind a catalogue uses (``int`` from an integer or a
  decimal string, ``str`` from a string or an integer), or None when it cannot be one.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np

IdKind = Literal["int", "str"]
INT_ID = re.compile(r"[+-]?[0-9]{1,64}")  # a decimal integer id as text (ASCII digits, optional sign)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def id_kind(values: Any) -> IdKind:
    """'int' when `values` (numpy or pandas) has an integer dtype, else 'str'."""
    kind = getattr(getattr(values, "dtype", None), "kind", None)
    if kind is None:
        kind = np.asarray(values).dtype.kind
    return "int" if kind in "iu" else "str"


def id_array(values: Any) -> np.ndarray:
    """Ids as numpy: integers keep their dtype, anything else becomes an object array of str."""
    if not isinstance(values, np.ndarray) and hasattr(values, "to_numpy"):  # pandas Series / Index / array
        values = values.to_numpy() if id_kind(values) == "int" else values.to_numpy(dtype=object)
    arr = np.asarray(values)
    if arr.dtype.kind in "iuO":
        return arr
    return arr.astype(str).astype(object)


def parse_id(raw: Any, kind: str) -> int | str | None:
    """`raw` as an id of `kind` ('int' or 'str'), or None when it cannot be one (booleans never are)."""
    if isinstance(raw, bool | np.bool_):
        return None
    if kind == "int":
        if isinstance(raw, int | np.integer):
            return int(raw)
        if isinstance(raw, str) and INT_ID.fullmatch(raw.strip()):
            return int(raw.strip())
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int | np.integer):
        return str(int(raw))
    return None


def in_int64(value: int) -> bool:
    """True when an integer id fits the signed 64-bit range the cache stores."""
    return INT64_MIN <= value <= INT64_MAX
