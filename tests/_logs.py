"""Hand-made canonical interaction logs for the features / rankers / cache tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from recsys.data.contract import CANONICAL_EVENTS, DATE_DTYPE
from recsys.data.ids import id_array, id_kind
from recsys.rankers.registry import RANKERS

Row = tuple[object, object, str | None, str, str | None]

NAMES: tuple[str, ...] = (
    "عطر 001",
    "عطر 002",
    "عطر 003",
    "زيت زيتون 500مل",
    "زيت زيتون 1 لتر",
    "Coffee 100G",
    "Coffee Gold 250G",
    "قهوة عربية 500 G",
    "أرز بسمتي 5 كيلو",
    "شامبو للأطفال ٤٠٠ مل",
    "Shampoo Kids 400 ml",
    "Chocolate Bar 48 pcs",
)


def settings_for(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a settings mapping shared by several tests that ranker `name` accepts (its settings model)."""
    fields = RANKERS[name].settings_model.model_fields  # type: ignore[attr-defined]
    return {k: v for k, v in params.items() if k in fields}


def _ids(values: Sequence[object]) -> pd.Series:
    """Ids as the contract types them: int32 when all integers (`recsys.data.ids.id_kind`), else pandas string."""
    arr = id_array(list(values)) if len(values) else np.zeros(0, dtype=np.int32)
    if id_kind(arr) == "int":
        return pd.Series(arr.astype(np.int32))
    return pd.Series(arr, dtype="string[pyarrow]")


def frame(rows: Sequence[Row]) -> pd.DataFrame:
    """A canonical table from (customer_id, product_id, product_name, event, iso date or None) tuples."""
    customers, products, names, events, dates = zip(*rows, strict=True) if rows else ((), (), (), (), ())
    return pd.DataFrame(
        {
            "customer_id": _ids(list(customers)),
            "product_id": _ids(list(products)),
            "product_name": pd.Categorical(list(names)),
            "event": pd.Categorical(list(events), categories=list(CANONICAL_EVENTS)),
            "event_date": pd.to_datetime(pd.Series(list(dates), dtype=object), utc=True).astype(DATE_DTYPE),
        }
    )


P = TypeVar("P")  # the product id type of a hand-made log


def list_log(
    customers: Sequence[object],
    products: Sequence[P],
    dates: Sequence[str | None],
    events: Sequence[str] | None = None,
    *,
    default_event: str = "purchased",
    name: Callable[[P], str] = "item {}".format,
) -> pd.DataFrame:
    """A canonical table from parallel plain lists (ids as given, dates ISO or None, names from `name(product)`)."""
    n = len(customers)
    return pd.DataFrame(
        {
            "customer_id": np.asarray(customers),
            "product_id": np.asarray(products),
            "product_name": pd.Series([name(p) for p in products], dtype="category"),
            "event": pd.Series(events if events is not None else [default_event] * n, dtype="category"),
            "event_date": pd.to_datetime(pd.Series(list(dates), dtype=object), utc=True).astype(DATE_DTYPE),
        }
    )


def random_log(
    n_rows: int = 3000,
    n_users: int = 400,
    n_products: int = 80,
    seed: int = 0,
    str_ids: bool = False,
    undated_frac: float = 0.05,
) -> pd.DataFrame:
    """A random log with skewed popularity, some undated rows, some nameless products."""
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.6, n_rows) % n_users
    products = rng.zipf(1.4, n_rows) % n_products
    names = np.array([NAMES[p % len(NAMES)] if p % 7 else None for p in range(n_products)], dtype=object)
    events = rng.choice(np.array(CANONICAL_EVENTS), n_rows, p=[0.3, 0.45, 0.05, 0.1, 0.05, 0.05])
    seconds = rng.integers(0, 180 * 86_400, n_rows)
    dates = pd.Series(pd.Timestamp("2023-03-31T23:59:59", tz="UTC") - pd.to_timedelta(seconds, unit="s"))
    dates = dates.mask(rng.random(n_rows) < undated_frac)
    cust = [f"C{u:04d}" for u in users] if str_ids else users.astype(np.int32)
    prod = [f"SKU-{p:05d}A" for p in products] if str_ids else products.astype(np.int32)
    return pd.DataFrame(
        {
            "customer_id": pd.Series(cust, dtype="string[pyarrow]") if str_ids else pd.Series(cust),
            "product_id": pd.Series(prod, dtype="string[pyarrow]") if str_ids else pd.Series(prod),
            "product_name": pd.Categorical(names[products]),
            "event": pd.Categorical(events, categories=list(CANONICAL_EVENTS)),
            "event_date": dates.astype(DATE_DTYPE),
        }
    )


def high_churn_log(n_users: int = 1500, n_products: int = 150, seed: int = 0) -> pd.DataFrame:
    """Like the case study: most customers appear once, popularity is skewed, wishlist rows are undated.

    About 10% of customers return; a returning customer tends to revisit products they touched
    (so engagement is a real, weak signal). Dates span 180 days.
    """
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_products + 1) ** 1.1
    pop /= pop.sum()
    start = pd.Timestamp("2022-10-01", tz="UTC")
    cust, prod, date, event = [], [], [], []
    for u in range(1, n_users + 1):
        n = 1 if rng.random() < 0.9 else int(rng.integers(2, 8))
        first = rng.uniform(0, 180)
        days = np.sort(first + rng.exponential(20, size=n)) % 180
        own = rng.choice(n_products, size=n, p=pop) + 1
        own[1:] = np.where(rng.random(n - 1) < 0.3, own[0], own[1:])
        for d, p in zip(days, own, strict=True):
            cust.append(u * 7 + 3)  # sparse ids
            prod.append(int(p))
            ev = rng.choice(["purchased", "cart", "wishlist"], p=[0.35, 0.6, 0.05])
            event.append(str(ev))
            date.append(None if ev == "wishlist" else str(start + pd.Timedelta(days=float(d))))
    return list_log(cust, prod, date, event, default_event="cart", name=lambda p: f"item {p % 7} size {p % 3}")
