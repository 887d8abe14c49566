"""Tables of one evaluation set: scored models, references, bootstrap replicates, precision records, CSV tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from recsys.evaluation.frame import SLICES, EvalSet, oracle_lists
from recsys.evaluation.intervals import (
    HitGroup,
    HitSet,
    hit_set,
    hit_values,
    percentile_interval,
    precision_interval,
    two_way_bootstrap,
)
from recsys.evaluation.metrics import METRICS, nanmean_or_nan
from recsys.evaluation.references import oracle_metrics, random_metrics
from recsys.evaluation.results import PrecisionAtK, num
from recsys.evaluation.scoring import Scored

RANDOM_REF = "random_expected"
ORACLE_REF = "oracle"
TABLE_COLUMNS: tuple[str, ...] = (
    "model",
    "k",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "interval",
    "hits",
    "n_products",
)


def value_matrix(hs: HitSet, ks: Sequence[int], n_relevant: np.ndarray) -> np.ndarray:
    """(hits within max(ks)) x (len(ks) * len(METRICS)) per-hit contributions, column = k-major then metric."""
    out = np.zeros((hs.count, len(ks) * len(METRICS)))
    for j, k in enumerate(ks):
        within = hs.rank <= k
        for i, metric in enumerate(METRICS):
            out[within, j * len(METRICS) + i] = hit_values(hs, metric, k, n_relevant)
    return out


@dataclass
class SetResult:
    """Scored models plus references on one evaluation set, with the bootstrap replicates of every series."""

    es: EvalSet
    ks: tuple[int, ...]
    scored: dict[str, Scored]
    reference_values: dict[str, np.ndarray]
    oracle_hits: HitSet
    replicates: np.ndarray
    columns: list[tuple[str, int, str]]

    @cached_property
    def floor(self) -> float:
        """The dispersion floor of every interval and power computation on this set (EvalSet.truth_dispersion)."""
        return self.es.truth_dispersion()

    @property
    def n_with_truth(self) -> int:
        """Products with at least one relevant customer (the macro averages' denominator)."""
        return int((self.es.n_relevant > 0).sum())

    def boot(self, label: str, k: int, metric: str) -> np.ndarray:
        """Replicates of one series (NaN when it was not bootstrapped)."""
        key = (label, k, metric)
        if key not in self.columns:
            return np.full(len(self.replicates), np.nan)
        return self.replicates[:, self.columns.index(key)]


def bootstrap_set(
    es: EvalSet, ks: Sequence[int], scored: Mapping[str, Scored], n_boot: int, seed: int
) -> tuple[np.ndarray, list[tuple[str, int, str]]]:
    """Two-way bootstrap replicates of every (model, k, metric) series of the scored models."""
    groups, columns = [], []
    for label, s in scored.items():
        groups.append(HitGroup(s.hits.product, s.hits.customer, value_matrix(s.hits, ks, es.n_relevant)))
        columns += [(label, int(k), m) for k in ks for m in METRICS]
    return two_way_bootstrap(groups, es.n_relevant > 0, n_boot, seed), columns


def evaluate_set(es: EvalSet, ks: Sequence[int], scored: dict[str, Scored], n_boot: int, seed: int) -> SetResult:
    """References, oracle hits and bootstrap replicates for the scored models on one evaluation set."""
    refs = {RANDOM_REF: random_metrics(es, ks), ORACLE_REF: oracle_metrics(es, ks)}
    offsets, codes = oracle_lists(es, int(max(ks)))
    oracle = hit_set(offsets, codes, np.ones(len(codes), dtype=bool))
    replicates, columns = bootstrap_set(es, ks, scored, n_boot, seed)
    return SetResult(es, tuple(ks), scored, refs, oracle, replicates, columns)


def precision_records(result: SetResult, label: str, level: float) -> list[PrecisionAtK]:
    """precision@k records of a model or reference on one set."""
    p = METRICS.index("precision")
    out = []
    for j, k in enumerate(result.ks):
        if label == RANDOM_REF:
            value = float(nanmean_or_nan(result.reference_values[label][p, j]))
            out.append(
                PrecisionAtK(
                    k=k,
                    value=num(value),
                    low=None,
                    high=None,
                    hits=num(value * k * result.n_with_truth) or 0.0,
                    phi=None,
                    boot_low=None,
                    boot_high=None,
                )
            )
            continue
        if label == ORACLE_REF:
            hs, values = result.oracle_hits, result.reference_values[label]
        else:
            hs, values = result.scored[label].hits, result.scored[label].values
        lo, hi, phi = precision_interval(hs, k, result.n_with_truth, level, result.floor)
        blo, bhi = percentile_interval(result.boot(label, k, "precision")[:, None], level)
        out.append(
            PrecisionAtK(
                k=k,
                value=num(nanmean_or_nan(values[p, j])),
                low=num(lo),
                high=num(hi),
                hits=float(hs.at(k).count),
                phi=num(phi),
                boot_low=num(blo[0]),
                boot_high=num(bhi[0]),
            )
        )
    return out


def long_table(result: SetResult, level: float) -> pd.DataFrame:
    """Long table: model, k, metric, value, ci_low, ci_high, interval (method), hits (within k), n_products."""
    rows = []
    rnd = result.reference_values[RANDOM_REF][METRICS.index("precision")]
    labels = [*result.scored, RANDOM_REF, ORACLE_REF]
    for label in labels:
        values = result.reference_values[label] if label in (RANDOM_REF, ORACLE_REF) else result.scored[label].values
        hs = (
            result.oracle_hits
            if label == ORACLE_REF
            else (result.scored[label].hits if label in result.scored else None)
        )
        for j, k in enumerate(result.ks):
            hits_k = np.nan if hs is None else float(hs.at(k).count)
            for i, metric in enumerate(METRICS):
                value = float(nanmean_or_nan(values[i, j]))
                n = int(np.isfinite(values[i, j]).sum())
                lo = hi = np.nan
                method = "exact" if label == RANDOM_REF else "none"
                if metric == "precision" and hs is not None:
                    lo, hi, _ = precision_interval(hs, k, result.n_with_truth, level, result.floor)
                    method = "quasi_poisson_garwood"
                elif label in result.scored:
                    blo, bhi = percentile_interval(result.boot(label, k, metric)[:, None], level)
                    lo, hi, method = float(blo[0]), float(bhi[0]), "two_way_bootstrap_percentile"
                if label == RANDOM_REF and metric == "precision":
                    hits_k = value * k * n
                rows.append((label, k, metric, value, lo, hi, method, hits_k, n))
            if label not in (RANDOM_REF, ORACLE_REF):
                expected = float(nanmean_or_nan(rnd[j]))
                p = float(nanmean_or_nan(values[METRICS.index("precision"), j]))
                lo, hi, _ = (
                    precision_interval(hs, k, result.n_with_truth, level, result.floor)
                    if hs is not None
                    else (np.nan, np.nan, np.nan)
                )
                with np.errstate(divide="ignore", invalid="ignore"):
                    lift = np.array([p, lo, hi]) / expected if expected > 0 else np.full(3, np.nan)
                rows.append(
                    (
                        label,
                        k,
                        "lift",
                        lift[0],
                        lift[1],
                        lift[2],
                        "precision_interval_over_exact_random",
                        hits_k,
                        int(np.isfinite(values[0, j]).sum()),
                    )
                )
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table["k"] = table["k"].astype(np.int64)
    table["n_products"] = table["n_products"].astype(np.int64)
    return table


def slice_table(result: SetResult) -> pd.DataFrame:
    """Long table (slice, model, k, metric, value): recall within each training-history slice and the share of hits."""
    parts = []
    for label, s in result.scored.items():
        if s.slice_recall is None or s.slice_hits is None:
            continue
        for si, name in enumerate(SLICES):
            for j, k in enumerate(result.ks):
                total = s.slice_hits[:, j].sum()
                parts.append((name, label, k, "recall", float(nanmean_or_nan(s.slice_recall[si, j]))))
                parts.append((name, label, k, "hit_share", float(s.slice_hits[si, j] / total) if total else np.nan))
    return pd.DataFrame(parts, columns=["slice", "model", "k", "metric", "value"])
