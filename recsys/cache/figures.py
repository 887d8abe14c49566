"""The measured precision of what the cache serves — of exactly that configuration, or "not measured".

The cache, ``/health``, the dashboard and ``reports/summary.md`` show these figures under the word "served"
(``CacheManifest.served``). They are the evaluation's test results (``reports/datasets/<name>/evaluation/
summary.json``) of the model whose configuration is the served one:

- same data set (the manifest's ``dataset``; a cache built from a bare file is not measured);
- same ranker and settings: the cache's ranker params and the evaluated model's (its tested settings, the
  evaluation's seed and params/features.yaml, as ``recsys.evaluation.settings.ranker_params`` builds them) parse
  to the same typed settings (``recsys.rankers.settings``), apart from keys that only change speed
  (``RESULT_NEUTRAL``) and the features' reference date (the evaluation counts days back from the end of its fit
  rows, the cache from the end of its data: the same rule on each side's rows);
- each product's own ranking: a catalogue-wide cap (``cache.allocation.max_exposures``) serves other lists, which
  no study measures, so a capped cache is "not measured";
- depths up to the served one: precision@k for every evaluated k <= n;
- the evaluated implementation: a Spark-built cache is measured only for the rankers whose Spark port gives the
  pandas engine's lists (``EXACT_PARITY``; tests/test_spark_parity.py), not for MLlib's ALS.

The evaluation fits on the rows before its test cutoff and scores the test window once; the cache refits the
same configuration on every row. That is what "measured" means here, and ``what`` says it in words.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recsys import config
from recsys.cache.manifest import MeasuredPrecision, ServedFigures
from recsys.evaluation.results import EvaluationSummary, ModelResult, read_summary
from recsys.evaluation.settings import ranker_params
from recsys.rankers.registry import RANKERS
from recsys.rankers.settings import parse_settings

EXACT_PARITY: dict[str, tuple[str, ...]] = {"spark": ("activity", "recency")}  # engines' rankers equal to pandas'
RESULT_NEUTRAL: dict[str, frozenset[str]] = {  # settings that change speed, never results (per ranker; "*" = all)
    "*": frozenset({"chunk_entries", "chunk_size", "score_threads", "block"}),
    "als": frozenset({"num_threads"}),  # implicit's ALS solves each customer independently
    "itemknn": frozenset({"num_threads"}),
}


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys ('engagement.normalisation') as nested dicts."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def comparable(ranker: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A ranker's params as typed settings (defaults filled), without the result-neutral keys and the reference date."""
    factory = RANKERS.get(ranker)
    if factory is None:
        raise ValueError(f"unknown ranker {ranker!r}")
    model = getattr(factory, "settings_model")  # noqa: B009 - every registered ranker class declares one
    settings = parse_settings(model, ranker, params).model_dump()
    neutral = RESULT_NEUTRAL["*"] | RESULT_NEUTRAL.get(ranker, frozenset())
    out = {k: v for k, v in settings.items() if k not in neutral}
    features = dict(out.get("features") or {})
    features["features"] = {k: v for k, v in dict(features.get("features") or {}).items() if k != "reference_date"}
    out["features"] = features
    return out


def differences(ranker: str, served: Mapping[str, Any], evaluated: Mapping[str, Any]) -> list[str]:
    """'key: served X, evaluated Y' for every setting where the two configurations differ (empty = the same)."""
    a, b = flatten(comparable(ranker, served)), flatten(comparable(ranker, evaluated))
    return [
        f"{key}: served {a.get(key)!r}, evaluated {b.get(key)!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def evaluated_params(
    summary: EvaluationSummary, model: ModelResult, feature_params: Mapping[str, Any]
) -> dict[str, Any]:
    """The make_ranker params the evaluation tested `model` with (its settings, the seed, the features)."""
    return ranker_params(unflatten(model.params), feature_params, summary.protocol.seed)


def not_measured(what: str, reason: str, source: str | None = None) -> ServedFigures:
    """Figures of a configuration nobody measured: the reason instead of numbers."""
    return ServedFigures(status="not_measured", what=what, reason=reason, source=source)


def served_figures(
    *,
    dataset: str | None,
    ranker: str,
    params: Mapping[str, Any],
    n: int,
    max_exposures: int | None,
    feature_params: Mapping[str, Any],
    summary_path: Path | None = None,
    engine: str = "pandas",
) -> ServedFigures:
    """What is measured of the served configuration (module docstring): the figures, or why there are none."""
    what = f"{ranker}, each product's own top {n}" if max_exposures is None else f"{ranker} under cap {max_exposures}"
    if max_exposures is not None:
        return not_measured(
            what,
            f"the catalogue-wide cap {max_exposures} serves lists no study measures (the evaluation scores each "
            "product's own ranking; the campaign study scores per-campaign caps)",
        )
    if dataset is None:
        return not_measured(what, "the cache was built from a file that is not one of the pipeline's data sets")
    if engine != "pandas" and ranker not in EXACT_PARITY.get(engine, ()):
        return not_measured(what, f"{ranker} on {engine} is another implementation than the evaluated one")
    path = summary_path or config.dataset_paths(dataset).evaluation_summary
    source = config.relative(path)
    if not Path(path).is_file():
        return not_measured(what, f"no evaluation of data set {dataset!r} ({source}): run `recsys evaluate`", source)
    summary = read_summary(Path(path))
    models = [m for m in summary.models if m.ranker == ranker]
    if not models:
        return not_measured(what, f"the evaluation of {dataset!r} has no model with ranker {ranker!r}", source)
    found = [(m, differences(ranker, params, evaluated_params(summary, m, feature_params))) for m in models]
    same = next((m for m, diff in found if not diff), None)
    if same is None:
        m, diff = min(found, key=lambda x: len(x[1]))
        return not_measured(
            what,
            f"the served settings differ from every evaluated {ranker} model (closest {m.label}: {'; '.join(diff)})",
            source,
        )
    test = summary.split("test")
    ks = [p for p in same.precision if p.k <= n]
    return ServedFigures(
        status="measured",
        what=(
            f"test-window precision of {same.label} ({what}), fitted on the rows before {test.cutoff} and scored once "
            f"on the test window ({test.evaluated_products:,} products); the cache refits the same configuration on "
            "every row"
        ),
        source=source,
        model=same.label,
        headline_k=summary.protocol.headline_k if summary.protocol.headline_k <= n else None,
        precision=[MeasuredPrecision(k=p.k, value=p.value, low=p.low, high=p.high, hits=p.hits) for p in ks],
    )
