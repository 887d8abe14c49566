"""The product catalogue: names (and first-seen dates) known at launch, including products with no interactions yet.

A product's name is catalogue data: a merchant knows it before the product sells. Rankers that read names
(``content``, ``name_knn``) rank a product without fit rows from its catalogue name; the others give it their
global order and say so (``Recommendations.basis``).

- ``Catalogue.from_interactions``: every product of a table with the name it was first seen with (its earliest
  dated row; undated rows after every dated one, then the table's row order). The evaluation uses it for the
  products of a truth window: the name a product launched with, nothing about who bought it.
- ``read_catalogue``: a file of products not yet in the log (CSV or Parquet; columns ``product_id``,
  ``product_name``, optional ``first_seen``). Bad rows are set aside, counted per reason, never silently dropped:
  ``missing_product``, ``missing_name`` (null, empty or only white space / control characters), ``name_too_long``
  (more than ``MAX_NAME_CHARS`` characters), ``bad_date`` and ``duplicate`` (a product id already listed: the first
  row wins).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.basis import MAX_NAME_CHARS
from recsys.data.contract import DATE_DTYPE
from recsys.data.ids import id_array, id_kind

CATALOGUE_COLUMNS: tuple[str, ...] = ("product_id", "product_name", "first_seen")
REJECT_REASONS: tuple[str, ...] = ("missing_product", "missing_name", "name_too_long", "bad_date", "duplicate")
_BLANK = re.compile(r"^[\s\x00-\x1f\x7f]*$")


@dataclass(frozen=True)
class Catalogue:
    """Product ids (unique, sorted) with their names and first-seen instants (NaT when unknown)."""

    product_ids: np.ndarray
    names: np.ndarray
    first_seen: np.ndarray

    def __post_init__(self) -> None:
        """Check the arrays line up and the ids are unique and sorted."""
        n = len(self.product_ids)
        if len(self.names) != n or len(self.first_seen) != n:
            raise ValueError("catalogue arrays must have one entry per product")
        if n > 1 and not bool(np.all(self.product_ids[1:] > self.product_ids[:-1])):
            raise ValueError("catalogue product ids must be unique and sorted (use Catalogue.build)")

    def __len__(self) -> int:
        """Number of products."""
        return int(len(self.product_ids))

    @property
    def id_kind(self) -> str:
        """'int' or 'str' (recsys.data.ids)."""
        return id_kind(self.product_ids)

    @classmethod
    def build(cls, product_ids: Any, names: Any, first_seen: Any = None) -> Catalogue:
        """A catalogue from parallel arrays (the first entry of a repeated id wins); names must be non-empty text."""
        ids = id_array(product_ids)
        text = np.asarray(pd.array(np.asarray(names, dtype=object), dtype="string").astype(object), dtype=object)
        seen = (
            np.full(len(ids), np.datetime64("NaT", "us"))
            if first_seen is None
            else pd.to_datetime(pd.Series(first_seen), utc=True).dt.tz_localize(None).to_numpy("datetime64[us]")
        )
        if not (len(ids) == len(text) == len(seen)):
            raise ValueError("product_ids, names and first_seen must have the same length")
        bad = [i for i, t in enumerate(text) if not isinstance(t, str) or _BLANK.match(t)]
        if bad:
            raise ValueError(f"catalogue names must be non-empty text; {len(bad)} are missing or blank")
        order = np.argsort(ids, kind="stable")
        ids, text, seen = ids[order], text[order], seen[order]
        first = np.ones(len(ids), dtype=bool)
        if len(ids) > 1:
            first[1:] = ids[1:] != ids[:-1]
        return cls(ids[first], text[first], seen[first])

    @classmethod
    def empty(cls, kind: str = "int") -> Catalogue:
        """A catalogue without products."""
        ids = np.zeros(0, dtype=np.int64) if kind == "int" else np.zeros(0, dtype=object)
        return cls(ids, np.zeros(0, dtype=object), np.zeros(0, dtype="datetime64[us]"))

    @classmethod
    def from_interactions(cls, interactions: pd.DataFrame, product_ids: Any = None) -> Catalogue:
        """Every product of the table (or only `product_ids`) with the name of its first row (earliest dated first)."""
        rows = interactions[["product_id", "product_name", "event_date"]]
        rows = rows[rows["product_name"].notna()]
        if product_ids is not None:
            wanted = id_array(product_ids)
            rows = rows[rows["product_id"].isin(wanted)]
        if rows.empty:
            return cls.empty(id_kind(interactions["product_id"]))
        dates = rows["event_date"]
        us = dates.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]").view(np.int64)
        key = np.where(dates.notna().to_numpy(), us, np.iinfo(np.int64).max)  # undated rows after every dated one
        order = np.lexsort((np.arange(len(rows)), key))
        ordered = rows.iloc[order]
        first = ordered.drop_duplicates("product_id", keep="first")
        seen = first["event_date"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
        return cls.build(
            id_array(first["product_id"]), first["product_name"].astype("string").to_numpy(dtype=object), seen
        )

    def names_of(self, product_ids: Any) -> np.ndarray:
        """The catalogue name of each requested id (object array; None where the catalogue has no such product)."""
        requested = id_array(product_ids)
        out = np.full(len(requested), None, dtype=object)
        if len(self) == 0 or len(requested) == 0:
            return out
        if (requested.dtype.kind in "iu") != (self.product_ids.dtype.kind in "iu"):
            return out
        pos = pd.Index(self.product_ids).get_indexer(pd.Index(requested))
        found = pos >= 0
        out[found] = self.names[pos[found]]
        return out

    def restrict(self, product_ids: Any) -> Catalogue:
        """The catalogue's entries for the given ids only."""
        keep = np.isin(self.product_ids, id_array(product_ids))
        return Catalogue(self.product_ids[keep], self.names[keep], self.first_seen[keep])

    def to_frame(self) -> pd.DataFrame:
        """product_id, product_name, first_seen (UTC)."""
        return pd.DataFrame(
            {
                "product_id": self.product_ids,
                "product_name": pd.array(self.names, dtype="string"),
                "first_seen": pd.to_datetime(self.first_seen).tz_localize("UTC").astype(DATE_DTYPE),
            }
        )


@dataclass(frozen=True)
class CatalogueReport:
    """What reading a catalogue file did: rows in, kept, and the rows set aside per reason."""

    path: str
    rows_in: int
    kept: int
    rejected: dict[str, int] = field(default_factory=dict)


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as strings / native types (a clear error for a missing file or column)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"catalogue file {path} not found: write a CSV or Parquet with columns product_id, product_name "
            "(optional first_seen), or set params/cache.yaml: cache.catalogue to null"
        )
    if path.suffix.lower() == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in ("product_id", "product_name") if c not in table.columns]
    if missing:
        raise ValueError(
            f"catalogue file {path} lacks column(s) {missing}; it needs product_id, product_name "
            f"(optional first_seen), found {list(table.columns)}"
        )
    return table


def _typed_ids(values: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids as the log types them, mask of usable ids): integers when the log's ids are integers, else strings."""
    text = values.astype("string").str.strip()
    present = text.notna() & (text != "")
    if kind == "int":
        as_int = pd.to_numeric(text.where(present), errors="coerce")
        whole = as_int.notna() & (as_int == np.floor(as_int.fillna(0)))
        return as_int.fillna(0).astype(np.int64).to_numpy(), (present & whole).to_numpy(dtype=bool)
    return text.fillna("").to_numpy(dtype=object), present.to_numpy(dtype=bool)


def read_catalogue(path: Path, kind: str) -> tuple[Catalogue, pd.DataFrame, CatalogueReport]:
    """(catalogue, rows set aside with a `reason` column, report) of a catalogue file whose ids are of `kind`.

    `kind` is the log's product id kind ('int' or 'str'): an id that cannot be one is ``missing_product``.
    """
    table = _read_table(Path(path))
    reason = pd.Series(pd.NA, index=table.index, dtype="string")
    ids, ok_id = _typed_ids(table["product_id"], kind)
    reason[~ok_id] = "missing_product"
    names = table["product_name"].astype("string")
    blank = names.isna() | names.fillna("").str.fullmatch(r"[\s\x00-\x1f\x7f]*")
    reason[reason.isna() & blank.to_numpy(dtype=bool)] = "missing_name"
    long = names.fillna("").str.len() > MAX_NAME_CHARS
    reason[reason.isna() & long.to_numpy(dtype=bool)] = "name_too_long"
    seen = pd.Series(pd.NaT, index=table.index, dtype="datetime64[us, UTC]")
    if "first_seen" in table.columns:
        raw = table["first_seen"]
        parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")
        bad_date = raw.notna() & (raw.astype("string").str.strip() != "") & parsed.isna()
        reason[reason.isna() & bad_date.to_numpy(dtype=bool)] = "bad_date"
        seen = parsed.astype("datetime64[us, UTC]")
    key = pd.Series(ids, index=table.index).astype("string")
    dup = key.duplicated(keep=False) & reason.isna()
    first_of_dup = key[dup].drop_duplicates(keep="first").index
    reason[dup & ~table.index.isin(first_of_dup)] = "duplicate"
    keep = reason.isna().to_numpy(dtype=bool)
    catalogue = Catalogue.build(ids[keep], names[keep].to_numpy(dtype=object), seen[keep])
    rejected = table.loc[~keep].assign(reason=reason[~keep].astype(str))
    counts = {r: int((rejected["reason"] == r).sum()) for r in REJECT_REASONS if (rejected["reason"] == r).any()}
    return catalogue, rejected, CatalogueReport(str(path), int(len(table)), int(keep.sum()), counts)
