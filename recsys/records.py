"""Typed result records shared by the evaluation and the allocation: immutable pydantic models, JSON-safe floats."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict


def num(x: Any) -> float | None:
    """A JSON-safe float: 6 significant digits, None for missing / NaN / infinite."""
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


class Record(BaseModel):
    """Base of every result record: immutable, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)
