"""Synthetic default data: a marketplace log in the case-study's exact raw format, calibrated to its profile.

The generator has structure, not just marginals:

* **Products** get a heavy-tailed interaction count (69% are touched once), a latent category, a
  launch day and a finite lifetime; their interactions fall inside that lifetime, following the
  marketplace's growing daily traffic. The most popular products are mostly perfumes, named
  ``عطر <id zero-padded to 3 digits>`` as in the real log; other names carry a category noun
  (Arabic, sometimes English or mixed), a brand, a size and a unit (مل, كيلو, G, ...).
* **Visits**: interaction slots of one day are ordered by category, so a visit (consecutive slots)
  touches one category, like a session.
* **Users** are one visit (most) or several linked visits on different days: a returning user comes
  back after a gap, prefers the category of an earlier visit, and more active visits are more
  likely to be returned to. Every wishlist row is undated (the case-study quirk); ~0.2% of rows are
  repeated with a new index (same customer, product, event and second), as in the real log.

Every random choice comes from one ``numpy.random.Generator`` seeded by the caller.

Three settings are not pinned by the published profile and are therefore parameters (``Behaviour``,
``params/generate.yaml: generate.behaviour``): how often a return visit goes back to a category the
customer knows (``category_loyalty``), how much a product's name reveals its category
(``name_signal``: names are permuted across a share of products, from a separate random stream so
nothing else changes) and the retention across the 80% split (``retention``: a target solved for the
number of return visits). The defaults reproduce the calibrated log byte for byte. ``generate``
also writes the true category of every product next to the CSV (``<stem>.categories.parquet``) so
that category inference and loyalty measurement can be checked against it.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recsys.config import check_keys, relative
from recsys.data.contract import CASE_STUDY_HEADER
from recsys.data.profile import split_stats

log = logging.getLogger(__name__)

START = np.datetime64("2022-10-01T00:00:00", "s")
DAYS = 182  # 2022-10-01 .. 2023-03-31
# Daily traffic shape (relative), knots fitted to the profile's last-30/60/90-day shares and median date.
TRAFFIC_KNOTS_X = np.array([0, 30, 61, 91, 106, 121, 136, 152, 167, 182], dtype=float)
TRAFFIC_KNOTS_Y = np.array([0.3, 8.5, 36.0, 42.0, 48.0, 88.0, 62.0, 52.0, 54.0, 46.0])


@dataclass(frozen=True)
class Calibration:
    """Targets and shape constants of the generator at scale 1.0 (from case_study_profile.json)."""

    unique_rows: int = 498_879
    duplicate_rows: dict[str, int] | None = None
    users: int = 433_787
    products: int = 200_325
    events: dict[str, int] | None = None
    single_product_share: float = 0.6908
    popularity_exponent: float = 1.95
    max_product_count: int = 2_556
    visit_size_probs: tuple[float, ...] = (0.915, 0.066, 0.013, 0.004, 0.0015, 0.0006, 0.0003)
    visit_tail_exponent: float = 2.8
    visit_tail_mass: float = 0.0005
    max_visit: int = 30
    returning_links: float = 0.07
    return_gap_days: float = 40.0
    return_time_power: float = 2.0
    wishlist_singleton_boost: float = 2.3
    launch_lead_days: float = 40.0
    lifetime_days: float = 220.0
    singleton_late_tilt: float = 1.9

    def event_counts(self) -> dict[str, int]:
        """Unique-row counts per event at scale 1.0."""
        return self.events or {
            "cart": 304_282,
            "purchased": 166_150,
            "wishlist": 22_178,
            "search_keyword": 3_190,
            "rating": 3_079,
        }

    def duplicate_counts(self) -> dict[str, int]:
        """Repeated rows (same customer, product, event, second; new index) per event at scale 1.0."""
        return self.duplicate_rows or {"cart": 847, "purchased": 273, "wishlist": 1}


NAME_STREAM = 1  # child seed (seed, NAME_STREAM) of the name shuffle: it leaves the main random stream untouched
RETENTION_QUANTILE = 0.8  # the split at which `Behaviour.retention` is measured (as in the published profile)


@dataclass(frozen=True)
class Behaviour:
    """Generator settings the published profile does not pin; the defaults reproduce the calibrated log.

    category_loyalty: share of return visits that go back to a category of an earlier visit (the rest
      go to a visit of any category, so they match only by chance).
    name_signal: share of products that keep their own name; the names of the other products are
      permuted among them (0 = every name shuffled: names carry no category information, and the
      multiset of names is unchanged).
    retention: target share of the users active before the 80% date quantile who are active after
      it too; None keeps the calibrated number of return visits (retention ~3.1%, the profile's 3.05%).
    """

    category_loyalty: float = 0.7
    name_signal: float = 1.0
    retention: float | None = None

    def __post_init__(self) -> None:
        for key in ("category_loyalty", "name_signal"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"generate.behaviour.{key} must be in [0, 1], got {value}")
        if self.retention is not None and not 0.0 < self.retention < 1.0:
            raise ValueError(f"generate.behaviour.retention must be in (0, 1) or null, got {self.retention}")


def behaviour_from_params(cfg: Mapping[str, Any] | None) -> Behaviour:
    """A Behaviour from the `generate.behaviour` block of params (missing keys keep their defaults)."""
    cfg = dict(cfg or {})
    check_keys(cfg, [f.name for f in fields(Behaviour)], "generate.behaviour")
    values: dict[str, Any] = {}
    for key, value in cfg.items():
        if value is None and key == "retention":
            values[key] = None
            continue
        try:
            values[key] = float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"generate.behaviour.{key} must be a number, got {value!r}") from exc
    return Behaviour(**values)


CATEGORIES: list[tuple[str, str, list[str]]] = [
    # (arabic noun, english noun, units)
    ("عطر", "Perfume", ["مل", "ml"]),
    ("زيت زيتون", "Olive Oil", ["مل", "لتر"]),
    ("أرز", "Rice", ["كيلو", "kg"]),
    ("قهوة", "Coffee", ["G", "جرام"]),
    ("شاي", "Tea", ["G", "كيس"]),
    ("شامبو", "Shampoo", ["مل", "ml"]),
    ("كريم", "Cream", ["مل", "G"]),
    ("حليب", "Milk", ["لتر", "مل"]),
    ("عسل", "Honey", ["G", "كيلو"]),
    ("شوكولاتة", "Chocolate", ["G", "قطعة"]),
    ("معجون أسنان", "Toothpaste", ["مل", "G"]),
    ("صابون", "Soap", ["G", "قطعة"]),
    ("حفاضات", "Diapers", ["قطعة", "pcs"]),
    ("مناديل", "Tissues", ["حبة", "pcs"]),
    ("عصير", "Juice", ["مل", "لتر"]),
    ("تمر", "Dates", ["كيلو", "G"]),
    ("بهارات", "Spices", ["G", "جرام"]),
    ("مكرونة", "Pasta", ["G", "كيلو"]),
    ("سماعة", "Headphones", ["قطعة", "pcs"]),
    ("شاحن", "Charger", ["واط", "W"]),
    ("حقيبة", "Bag", ["قطعة", "pcs"]),
    ("ساعة", "Watch", ["قطعة", "pcs"]),
    ("قميص", "Shirt", ["مقاس", "size"]),
    ("أحمر شفاه", "Lipstick", ["G", "قطعة"]),
]
CATEGORY_WEIGHTS = np.array([14, 5, 5, 6, 4, 5, 6, 4, 3, 5, 3, 3, 4, 3, 4, 3, 3, 3, 4, 4, 3, 3, 4, 3], dtype=float)
ADJECTIVES_AR = [
    "طبيعي",
    "ممتاز",
    "فاخر",
    "عضوي",
    "أصلي",
    "جديد",
    "كلاسيك",
    "خفيف",
    "بريميوم",
    "للأطفال",
    "اقتصادي",
    "مركز",
]
ADJECTIVES_EN = ["Natural", "Premium", "Classic", "Organic", "Original", "Light", "Extra", "Family", "Gold", "Fresh"]
BRANDS = [
    "Rawda",
    "Noor",
    "Salam",
    "Fajr",
    "Layan",
    "Dana",
    "Sama",
    "Reem",
    "Hala",
    "Jood",
    "Nakheel",
    "Waha",
    "الريم",
    "النور",
    "الواحة",
    "الفجر",
    "سما",
    "هلا",
    "جود",
    "لين",
    "Taiba",
    "Afnan",
    "Zain",
    "Lulu",
]
SIZES = np.array([50, 100, 125, 150, 200, 250, 330, 400, 500, 750, 1, 2, 3, 5, 10, 12, 24, 30, 36, 48])


def traffic_shape(rng: np.random.Generator) -> np.ndarray:
    """Relative daily traffic over the 181 days: fitted trend, day-to-day noise and two promotion days."""
    trend = np.interp(np.arange(DAYS) + 0.5, TRAFFIC_KNOTS_X, TRAFFIC_KNOTS_Y)
    noise = np.exp(rng.normal(0.0, 0.08, DAYS))
    promo = np.ones(DAYS)
    promo[[120, 169]] = [1.45, 1.25]  # 2023-01-29 and 2023-03-19: marketplace campaigns
    lam = trend * noise * promo
    share: np.ndarray = lam / lam.sum()
    return share


def product_counts(rng: np.random.Generator, n_products: int, total: int, cal: Calibration, scale: float) -> np.ndarray:
    """Interactions per product: a share touched once, the rest a truncated discrete power law; sums to `total`."""
    n_single = int(round(cal.single_product_share * n_products))
    n_multi = n_products - n_single
    cap = max(3, int(round(cal.max_product_count * max(scale, 0.05) ** 0.5)))
    u = rng.random(n_multi)
    a = cal.popularity_exponent
    multi = np.floor(2.0 * (1.0 - u * (1.0 - (cap / 2.0) ** (1.0 - a))) ** (1.0 / (1.0 - a))).astype(np.int64)
    multi = np.clip(multi, 2, cap)
    target_multi = total - n_single
    diff = target_multi - int(multi.sum())
    order = np.argsort(-multi, kind="stable")
    if diff > 0:  # spread the missing mass proportionally over the head, keeping the shape
        add = np.floor(diff * multi / multi.sum()).astype(np.int64)
        multi += add
        rest = target_multi - int(multi.sum())
        multi[order[:rest]] += 1
    elif diff < 0:
        take = -diff
        room = multi - 2
        cut = np.floor(take * room / max(room.sum(), 1)).astype(np.int64)
        multi -= cut
        rest = int(multi.sum()) - target_multi
        idx = order[room[order] > cut[order]][:rest]
        multi[idx] -= 1
    counts = np.concatenate([np.ones(n_single, dtype=np.int64), multi])
    return counts[rng.permutation(n_products)]


def product_categories(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Latent category per product; the most popular products are mostly perfumes (category 0)."""
    n = len(counts)
    weights = CATEGORY_WEIGHTS / CATEGORY_WEIGHTS.sum()
    cat = rng.choice(len(CATEGORIES), size=n, p=weights)
    pop_rank = np.empty(n, dtype=np.int64)
    pop_rank[np.argsort(-counts, kind="stable")] = np.arange(n)
    p_perfume = np.where(pop_rank < max(1, n // 1000), 0.9, np.where(pop_rank < max(1, n // 100), 0.45, 0.0))
    cat[rng.random(n) < p_perfume] = 0
    return cat


def slot_days(rng: np.random.Generator, counts: np.ndarray, traffic: np.ndarray, cal: Calibration) -> np.ndarray:
    """Day of each interaction slot, inside its product's lifetime, following daily traffic."""
    cdf = np.concatenate([[0.0], np.cumsum(traffic)])
    n = len(counts)
    lead = rng.exponential(cal.launch_lead_days, n)
    life = cal.lifetime_days * np.log1p(counts) * rng.exponential(1.0, n) + 1.0
    # launch: drawn from traffic, shifted earlier so a product's interactions can span its life
    launch = np.interp(rng.random(n), cdf, np.arange(DAYS + 1)) - lead * (counts > 1)
    lo = np.clip(launch, 0, DAYS - 1)
    # a life that began before the window keeps its length
    hi = np.clip(launch + life, lo + np.minimum(life, DAYS), DAYS)
    prod = np.repeat(np.arange(n), counts)
    c_lo = np.interp(lo[prod], np.arange(DAYS + 1), cdf)
    c_hi = np.interp(hi[prod], np.arange(DAYS + 1), cdf)
    day = np.interp(c_lo + rng.random(len(prod)) * (c_hi - c_lo), cdf, np.arange(DAYS + 1))
    # once-touched products are the long tail of new listings: their traffic leans later
    single = counts[prod] == 1
    tilted = traffic * np.exp(cal.singleton_late_tilt * np.arange(DAYS) / DAYS)
    cdf_single = np.concatenate([[0.0], np.cumsum(tilted / tilted.sum())])
    day[single] = np.interp(rng.random(int(single.sum())), cdf_single, np.arange(DAYS + 1))
    days: np.ndarray = np.minimum(np.floor(day).astype(np.int64), DAYS - 1)
    return days


def visit_sizes(rng: np.random.Generator, n_visits: int, total: int, cal: Calibration) -> np.ndarray:
    """Sizes of visits (consecutive same-day slots), summing exactly to `total`.

    The shape of sizes >= 2 is fixed by the calibration; its mass is scaled so the expected mean
    is `total / n_visits`, then a handful of size-1/size-2 visits absorb the sampling noise.
    """
    shape = np.array(cal.visit_size_probs[1:])
    tail_k = np.arange(len(cal.visit_size_probs) + 1, cal.max_visit + 1)
    tail = tail_k.astype(float) ** -cal.visit_tail_exponent
    tail *= cal.visit_tail_mass / tail.sum()
    multi = np.concatenate([shape, tail])
    ks = np.arange(2, cal.max_visit + 1)
    mass = (total / n_visits - 1.0) / float(((ks - 1) * multi).sum())
    if not 0 < mass * multi.sum() < 1:
        raise ValueError(f"cannot spread {total} interactions over {n_visits} visits with this size shape")
    probs = np.concatenate([[1.0 - mass * multi.sum()], mass * multi])
    # exact quotas (largest remainder) instead of iid draws: the rare big visits are not left to chance
    quota = np.floor(probs * n_visits).astype(np.int64)
    remainder = probs * n_visits - quota
    quota[np.argsort(-remainder, kind="stable")[: n_visits - int(quota.sum())]] += 1
    sizes = rng.permutation(np.repeat(np.arange(1, cal.max_visit + 1), quota))
    diff = total - int(sizes.sum())
    if diff > 0:
        ones = np.flatnonzero(sizes == 1)
        sizes[rng.choice(ones, size=diff, replace=False)] += 1
    elif diff < 0:
        twos = np.flatnonzero(sizes == 2)
        sizes[rng.choice(twos, size=-diff, replace=False)] -= 1
    return sizes


def link_visits(
    rng: np.random.Generator,
    v_day: np.ndarray,
    v_cat: np.ndarray,
    v_size: np.ndarray,
    n_links: int,
    cal: Calibration,
    category_loyalty: float = Behaviour.category_loyalty,
) -> np.ndarray:
    """Parent visit of each visit (-1 = first visit of a new user): returning users revisit after a gap."""
    n = len(v_day)
    parent = np.full(n, -1, dtype=np.int64)
    if n_links <= 0:
        return parent
    # slot-level index sorted by (category, day): a visit with more slots is more likely to be returned to
    slot_visit = np.repeat(np.arange(n), v_size)
    key = v_cat[slot_visit].astype(np.int64) * (DAYS + 1) + v_day[slot_visit]
    order = np.argsort(key, kind="stable")
    sorted_key, sorted_visit = key[order], slot_visit[order]
    all_order = np.argsort(v_day[slot_visit], kind="stable")
    all_day, all_visit = v_day[slot_visit][all_order], slot_visit[all_order]

    # returns accumulate with the user base: a later visit is more likely to be a return
    share_before = np.cumsum(np.bincount(v_day, weights=v_size, minlength=DAYS))[v_day] / v_size.sum()
    key_c = -np.log(rng.random(n)) / np.maximum(share_before, 1e-9) ** cal.return_time_power
    cand = np.argsort(key_c, kind="stable")[: min(n, int(n_links * 1.8) + 10)]
    gap = 1 + np.floor(rng.exponential(cal.return_gap_days, len(cand))).astype(np.int64)
    day_f = v_day[cand] - gap
    loyal = rng.random(len(cand)) < category_loyalty
    u = rng.random(len(cand))
    # loyal: a slot of the same category on day_f (or the nearest earlier day with one)
    hi = np.searchsorted(sorted_key, v_cat[cand].astype(np.int64) * (DAYS + 1) + day_f, side="right")
    lo = np.searchsorted(sorted_key, v_cat[cand].astype(np.int64) * (DAYS + 1) + day_f, side="left")
    cat_start = np.searchsorted(sorted_key, v_cat[cand].astype(np.int64) * (DAYS + 1), side="left")
    lo = np.where(lo == hi, np.maximum(hi - 1, cat_start), lo)
    pick_loyal = np.where(hi > lo, lo + np.floor(u * (hi - lo)).astype(np.int64), -1)
    f_loyal = np.where(pick_loyal >= 0, sorted_visit[np.clip(pick_loyal, 0, len(sorted_visit) - 1)], -1)
    # any category: a slot on day_f
    a_lo = np.searchsorted(all_day, day_f, side="left")
    a_hi = np.searchsorted(all_day, day_f, side="right")
    pick_any = np.where(a_hi > a_lo, a_lo + np.floor(u * (a_hi - a_lo)).astype(np.int64), -1)
    f_any = np.where(pick_any >= 0, all_visit[np.clip(pick_any, 0, len(all_visit) - 1)], -1)
    f = np.where(loyal, f_loyal, f_any)
    valid = (day_f >= 0) & (f >= 0) & (v_day[np.maximum(f, 0)] < v_day[cand])
    chosen = np.flatnonzero(valid)[:n_links]
    parent[cand[chosen]] = f[chosen]
    return parent


def retention_of_links(
    parent: np.ndarray, starts: np.ndarray, total: int, quantile: float = RETENTION_QUANTILE
) -> float:
    """Share of users with a visit before the slot quantile who also have one after it (visits in slot order).

    Slots are sorted by day and, within a day, in an order unrelated to time, so cutting the slot
    sequence at `quantile` approximates the profile's date-quantile split. The approximation still
    counts the slots that later become undated wishlist rows; `generate_log` reports the retention
    measured on the final log.
    """
    user = root_of(parent)
    early = starts < quantile * total
    early_users = np.unique(user[early])
    if len(early_users) == 0:
        return 0.0
    returning = np.isin(early_users, user[~early], assume_unique=False)
    return float(returning.mean())


def links_for_retention(
    rng: np.random.Generator,
    v_day: np.ndarray,
    v_cat: np.ndarray,
    v_size: np.ndarray,
    starts: np.ndarray,
    target: float,
    cal: Calibration,
    category_loyalty: float,
    tolerance: float = 0.002,
) -> int:
    """Number of return visits whose retention (``retention_of_links``) is closest to `target`, by bisection.

    Every trial links visits from a copy of `rng`'s state, so `rng` itself is not advanced; more
    return visits mean more retention (fewer users for the same visits), up to the number of visits.
    """
    total = int(v_size.sum())

    def measured(n_links: int) -> float:
        trial = copy.deepcopy(rng)
        return retention_of_links(
            link_visits(trial, v_day, v_cat, v_size, n_links, cal, category_loyalty), starts, total
        )

    lo, hi = 0, len(v_day) - 1
    r_lo, r_hi = 0.0, measured(hi)
    if r_hi < target:
        raise ValueError(
            f"generate.behaviour.retention {target} is not reachable: at most {r_hi:.3f} with every visit but one "
            "a return visit at this scale"
        )
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r_mid = measured(mid)
        if abs(r_mid - target) <= tolerance:
            return mid
        if r_mid < target:
            lo, r_lo = mid, r_mid
        else:
            hi, r_hi = mid, r_mid
    return lo if target - r_lo <= r_hi - target else hi


def root_of(parent: np.ndarray) -> np.ndarray:
    """Root of every node in a forest given by parent pointers (-1 = root), by pointer jumping."""
    root = np.where(parent < 0, np.arange(len(parent)), parent)
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def product_names(rng: np.random.Generator, pids: np.ndarray, cats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Primary and alternative name per product (alternative used on some rows of a few products)."""
    n = len(pids)
    ar = np.array([c[0] for c in CATEGORIES], dtype=object)
    en = np.array([c[1] for c in CATEGORIES], dtype=object)
    unit_choice = rng.integers(0, 2, n)
    units = np.array([[c[2][0], c[2][1]] for c in CATEGORIES], dtype=object)[cats, unit_choice]
    brand = np.array(BRANDS, dtype=object)[rng.integers(0, len(BRANDS), n)]
    size = SIZES[rng.integers(0, len(SIZES), n)].astype(str).astype(object)
    adj_ar = np.array(ADJECTIVES_AR, dtype=object)[rng.integers(0, len(ADJECTIVES_AR), n)]
    adj_en = np.array(ADJECTIVES_EN, dtype=object)[rng.integers(0, len(ADJECTIVES_EN), n)]
    model = rng.integers(1, 400, n).astype(str).astype(object)
    lang = rng.choice(3, size=n, p=[0.928, 0.067, 0.005])  # arabic, english, mixed
    arabic = ar[cats] + " " + adj_ar + " " + brand + " " + size + " " + units
    english = (
        brand
        + " "
        + en[cats]
        + " "
        + adj_en
        + " "
        + size
        + " "
        + np.where(unit_choice == 0, "ml", "pcs").astype(object)
    )
    mixed = ar[cats] + " " + brand + " " + en[cats] + " " + size + " " + units
    name = np.where(lang == 0, arabic, np.where(lang == 1, english, mixed))
    name = np.where(rng.random(n) < 0.35, name + " " + model, name)
    perfume = cats == 0
    name[perfume] = np.char.add("عطر ", np.char.zfill(pids[perfume].astype(str), 3)).astype(object)
    # ~9% of non-perfume products reuse the name of another product of their category (variants)
    share = np.flatnonzero(~perfume & (rng.random(n) < 0.09))
    if len(share):
        same_cat = np.flatnonzero(~perfume)
        donors = same_cat[np.argsort(cats[same_cat], kind="stable")]
        starts = np.searchsorted(cats[donors], cats[share], side="left")
        ends = np.searchsorted(cats[donors], cats[share], side="right")
        pick = starts + np.floor(rng.random(len(share)) * (ends - starts)).astype(np.int64)
        name[share] = name[donors[pick]]
    alt = np.where(lang == 0, mixed, arabic)
    alt[perfume] = name[perfume]
    return name, alt


def assign_events(
    rng: np.random.Generator, single_slot: np.ndarray, counts: dict[str, int], boost: float
) -> np.ndarray:
    """Exact event counts over slots; wishlist leans towards once-touched products (as in the real log)."""
    n = len(single_slot)
    events = np.empty(n, dtype=object)
    w = np.where(single_slot, boost, 1.0)
    key = -np.log(rng.random(n)) / w
    wish = (
        np.argpartition(key, counts["wishlist"] - 1)[: counts["wishlist"]]
        if counts["wishlist"]
        else np.array([], dtype=np.int64)
    )
    events[wish] = "wishlist"
    rest = np.flatnonzero(events == None)  # noqa: E711 - object array comparison
    pool = np.concatenate([np.full(c, e, dtype=object) for e, c in counts.items() if e != "wishlist"])
    events[rest] = pool[rng.permutation(len(pool))]
    return events


def scaled(counts: dict[str, int], scale: float) -> dict[str, int]:
    """Counts at a scale, rounded."""
    return {k: int(round(v * scale)) for k, v in counts.items()}


@dataclass(frozen=True)
class SyntheticLog:
    """A generated raw log with what the generator knows and a log cannot show: each product's category."""

    frame: pd.DataFrame
    categories: pd.DataFrame  # product_id, category (English category noun)
    behaviour: Behaviour
    return_visits: int  # visits linked to an earlier visit of the same customer
    retention_pct: float  # measured on the log's dated rows at the 80% date quantile, as the profile does


def generate_frame(
    scale: float = 1.0, seed: int = 42, cal: Calibration | None = None, behaviour: Behaviour | None = None
) -> pd.DataFrame:
    """Generate the raw log (case-study columns, ordered by index) as a DataFrame."""
    return generate_log(scale, seed, cal, behaviour).frame


def generate_log(
    scale: float = 1.0, seed: int = 42, cal: Calibration | None = None, behaviour: Behaviour | None = None
) -> SyntheticLog:
    """Generate the raw log with each product's true category and the measured retention."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    cal = cal or Calibration()
    behaviour = behaviour or Behaviour()
    rng = np.random.default_rng(seed)
    ev_counts = scaled(cal.event_counts(), scale)
    dup_counts = scaled(cal.duplicate_counts(), scale)
    raw_rows = int(round((sum(cal.event_counts().values()) + sum(cal.duplicate_counts().values())) * scale))
    ev_counts["cart"] += raw_rows - sum(ev_counts.values()) - sum(dup_counts.values())  # absorb rounding
    total = sum(ev_counts.values())
    n_products = max(2, int(round(cal.products * scale)))
    n_users = max(1, int(round(cal.users * scale)))
    traffic = traffic_shape(rng)

    counts = product_counts(rng, n_products, total, cal, scale)
    cats = product_categories(rng, counts)
    day = slot_days(rng, counts, traffic, cal)
    prod = np.repeat(np.arange(n_products), counts)
    single_slot = counts[prod] == 1

    # visits: consecutive slots of one day, ordered by category then at random
    order = np.lexsort((rng.random(total), cats[prod], day))
    prod, day, single_slot = prod[order], day[order], single_slot[order]
    n_links = int(round(cal.returning_links * n_users))
    sizes = visit_sizes(rng, n_users + n_links, total, cal)  # the visit count stays calibrated whatever the retention
    visit = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    v_day = day[starts]
    v_cat = cats[prod[starts]]
    day = v_day[visit]  # a visit happens on its first slot's day
    if behaviour.retention is not None:
        n_links = links_for_retention(
            rng, v_day, v_cat, sizes, starts, behaviour.retention, cal, behaviour.category_loyalty
        )
    parent = link_visits(rng, v_day, v_cat, sizes, n_links, cal, behaviour.category_loyalty)
    user_of_visit = root_of(parent)
    _, user = np.unique(user_of_visit[visit], return_inverse=True)

    # timestamps: a visit starts at a random second of its day; its rows follow 10 s - 10 min apart
    v_start = rng.integers(0, 86_400, len(sizes))
    csum = np.cumsum(rng.integers(10, 600, total))
    offset = csum - csum[starts[visit]]
    secs = np.minimum(v_start[visit] + offset, 86_399)
    ts = START + (day * 86_400 + secs).astype("timedelta64[s]")

    events = assign_events(rng, single_slot, ev_counts, cal.wishlist_singleton_boost)

    pids = rng.permutation(n_products) + 1  # dense product ids 1..P, unrelated to popularity
    n_ids = int(user.max()) + 1
    id_gaps = rng.integers(1, max(2, 2 * 14_675_204 // max(n_ids, 1)), n_ids)  # sparse ids like 2..14675204
    user_ids = (1 + np.cumsum(id_gaps))[rng.permutation(n_ids)]
    name, alt = product_names(rng, pids, cats)
    name, alt = shuffle_names(np.random.default_rng((seed, NAME_STREAM)), name, alt, behaviour.name_signal)
    use_alt = (rng.random(total) < 0.5) & (rng.random(n_products) < 0.03)[prod]
    names = np.where(use_alt, alt[prod], name[prod])

    frame = pd.DataFrame(
        {
            "product_id": pids[prod],
            "customer_id": user_ids[user],
            "product_name": names,
            "ts": ts,
            "Event": events,
        }
    )
    retention_pct = split_stats(dated_view(frame), RETENTION_QUANTILE)["retention_pct"]
    frame = pd.concat([frame, duplicate_rows(rng, frame, dup_counts)], ignore_index=True)
    frame = frame.iloc[np.argsort(frame["ts"].to_numpy(), kind="stable")].reset_index(drop=True)
    gaps = rng.integers(1, 163, len(frame))
    index = 3 + np.cumsum(gaps) - gaps[0]
    date_text = pd.Series(frame["ts"].to_numpy().astype("datetime64[s]").astype(str), dtype="string[pyarrow]")
    date_text = (date_text.str.replace("T", " ", regex=False) + "+00:00").where(frame["Event"].to_numpy() != "wishlist")
    raw = pd.DataFrame(
        {
            "index": index.astype(np.int64),
            "product_id": frame["product_id"].astype(np.int64),
            "customer_id": frame["customer_id"].astype(np.int64),
            "product_name": frame["product_name"].astype("string[pyarrow]"),
            "Event_Date": date_text,
            "Event": frame["Event"].astype("string[pyarrow]"),
        }
    )
    en = np.array([c[1] for c in CATEGORIES], dtype=object)
    by_id = np.argsort(pids, kind="stable")
    categories = pd.DataFrame(
        {"product_id": pids[by_id].astype(np.int64), "category": pd.Series(en[cats[by_id]], dtype="string[pyarrow]")}
    )
    return SyntheticLog(raw, categories, behaviour, int((parent >= 0).sum()), retention_pct)


def shuffle_names(
    rng: np.random.Generator, name: np.ndarray, alt: np.ndarray, name_signal: float
) -> tuple[np.ndarray, np.ndarray]:
    """Permute the names (primary and alternative together) of a `1 - name_signal` share of products among them."""
    if name_signal >= 1.0:
        return name, alt
    moved = np.flatnonzero(rng.random(len(name)) >= name_signal)
    source = moved[rng.permutation(len(moved))]
    name, alt = name.copy(), alt.copy()
    name[moved], alt[moved] = name[source], alt[source]
    return name, alt


def dated_view(frame: pd.DataFrame) -> pd.DataFrame:
    """Customer, product and date (NaT for the undated wishlist rows) of a frame being generated."""
    dates = pd.Series(frame["ts"].to_numpy().astype("datetime64[us]"), index=frame.index).dt.tz_localize("UTC")
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "product_id": frame["product_id"],
            "event_date": dates.where(frame["Event"].to_numpy() != "wishlist"),
        }
    )


def duplicate_rows(rng: np.random.Generator, frame: pd.DataFrame, counts: dict[str, int]) -> pd.DataFrame:
    """Rows repeated with the same customer, product, event and second (they get a new index)."""
    parts = []
    for event, n in counts.items():
        pool = np.flatnonzero(frame["Event"].to_numpy() == event)
        if n and len(pool):
            parts.append(frame.iloc[rng.choice(pool, size=min(n, len(pool)), replace=False)])
    return pd.concat(parts) if parts else frame.iloc[:0]


def write_case_study_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a raw frame as a CSV with the case-study header (quoted where needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame[list(CASE_STUDY_HEADER)], preserve_index=False)
    tmp = path.with_name(path.name + ".tmp")
    pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="needed"))
    tmp.replace(path)


def categories_path(csv_path: Path) -> Path:
    """Where the true product categories of a generated CSV are written: `<stem>.categories.parquet` next to it."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + ".categories.parquet")


def write_categories(categories: pd.DataFrame, path: Path) -> None:
    """Write the product -> category side file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    categories.to_parquet(tmp, index=False)
    tmp.replace(path)


def generate(
    path: Path, scale: float = 1.0, seed: int = 42, behaviour: Behaviour | None = None, categories: Path | None = None
) -> dict[str, Any]:
    """Generate the synthetic log to `path` and the true categories to `categories` (default: next to it)."""
    t0 = time.perf_counter()
    result = generate_log(scale=scale, seed=seed, behaviour=behaviour)
    categories = Path(categories) if categories is not None else categories_path(Path(path))
    write_case_study_csv(result.frame, Path(path))
    write_categories(result.categories, categories)
    took = time.perf_counter() - t0
    log.info(
        "generated %d rows (scale %s, seed %s, %s) into %s in %.1f s",
        len(result.frame),
        scale,
        seed,
        result.behaviour,
        path,
        took,
    )
    return {
        "rows": len(result.frame),
        "scale": scale,
        "seed": seed,
        "behaviour": asdict(result.behaviour),
        "return_visits": result.return_visits,
        "retention_pct": result.retention_pct,
        "categories": relative(categories),
        "seconds": round(took, 2),
    }


# ----------------------------------------------------------------------------------------------
# large scales: independent shards appended to one CSV
# ----------------------------------------------------------------------------------------------

SHARDED_FROM_SCALE = 100.0  # `recsys generate` shards from this scale on unless told otherwise
DEFAULT_SHARD_SCALE = 10.0  # scale of one shard: one generate_frame in memory at a time


def shard_seed(seed: int, shard: int) -> int:
    """Seed of one shard: `seed` itself for shard 0 (one shard = generate_frame's output), else derived."""
    if shard == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(shard)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def generate_sharded(
    path: Path,
    scale: float,
    seed: int = 42,
    shard_scale: float = DEFAULT_SHARD_SCALE,
    behaviour: Behaviour | None = None,
    categories: Path | None = None,
) -> dict[str, Any]:
    """Write a log of `scale` as ceil(scale / shard_scale) independent shards appended to one CSV.

    Each shard is ``generate_frame(scale / shards, shard_seed(seed, i))`` held in memory alone; its
    product and customer ids and its ``index`` are shifted past the previous shards', so id ranges
    are disjoint and the index keeps increasing. Differences from one in-memory log of the same
    scale: no customer ever crosses shards (returning users link within a shard); the popularity
    head is shallower (a product's count is capped at ``max_product_count * sqrt(shard scale)``, not
    ``sqrt(scale)``); perfume names keep their shard-local number, so several products share one
    (as name variants do); behaviour settings apply within each shard (a retention target is met per shard). The
    true categories of all shards go to one side file (`categories`, default next to the CSV). With one shard the
    output equals ``generate`` (same rows, same categories, same seed).
    """
    if scale <= 0 or shard_scale <= 0:
        raise ValueError(f"scale and shard_scale must be > 0, got {scale} and {shard_scale}")
    t0 = time.perf_counter()
    shards = max(1, int(np.ceil(scale / shard_scale - 1e-9)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    rows = 0
    cats: list[pd.DataFrame] = []
    offsets = {"product_id": 0, "customer_id": 0, "index": 0}
    writer: pacsv.CSVWriter | None = None
    try:
        for shard in range(shards):
            result = generate_log(scale=scale / shards, seed=shard_seed(seed, shard), behaviour=behaviour)
            frame = result.frame
            for col, offset in offsets.items():
                frame[col] = frame[col] + offset
            cats.append(result.categories.assign(product_id=result.categories["product_id"] + offsets["product_id"]))
            offsets = {col: int(frame[col].max()) + 1 for col in offsets}
            table = pa.Table.from_pandas(frame[list(CASE_STUDY_HEADER)], preserve_index=False)
            if writer is None:
                writer = pacsv.CSVWriter(tmp, table.schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
            writer.write_table(table)
            rows += len(frame)
            log.info("shard %d/%d: %d rows", shard + 1, shards, len(frame))
            del frame, table, result
        if writer is None:
            raise RuntimeError("generate_sharded wrote no shard (scale too small for one shard?)")
        writer.close()
        writer = None
        tmp.replace(path)
        write_categories(pd.concat(cats, ignore_index=True), categories or categories_path(path))
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    took = time.perf_counter() - t0
    log.info(
        "generated %d rows in %d shards (scale %s, seed %s) into %s in %.1f s", rows, shards, scale, seed, path, took
    )
    return {"rows": rows, "scale": scale, "seed": seed, "shards": shards, "seconds": round(took, 2)}
