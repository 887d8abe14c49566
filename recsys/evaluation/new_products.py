"""The new-products track: products sold in a window without fit rows, ranked from the name they launched with.

Most products a merchant sells next month are new. Protocol (params/evaluate.yaml: ``evaluate.new_products`` and
each model's ``new_search``):

1. catalogue: a window product's catalogue entry is the name it was first seen with in the window
   (``Catalogue.from_interactions``): catalogue data a merchant has at launch, nothing about who bought it;
2. name models are the models whose ranker reads names (``content``, ``name_knn``); every other model gives a new
   product its global order (basis ``names_unused``). A name model's ``new_search`` (knobs only, e.g. the cold
   weight) is tuned on the validation window's new products, on one validation fit with its chosen settings
   (``evaluate.new_products.budget`` combinations at most, seeded sample beyond);
3. the fallback is the model of ``evaluate.new_products.fallbacks`` with the best validation objective on the new
   products (what a name-blind deployment would serve them);
4. test: every model ranks the test window's new products once (name models with their new-products settings);
   intervals as for known products; the family = every name model against the fallback at every k, customer
   sign-flip tests, Holm-corrected within this family, exact power; verdicts per model and k (``name_better``,
   ``fallback_better``, ``no_detectable_difference``, ``inconclusive``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from recsys.data.catalogue import Catalogue
from recsys.evaluation.compare import PlannedComparison
from recsys.evaluation.frame import EvalSet
from recsys.evaluation.metrics import METRICS, nanmean_or_nan
from recsys.evaluation.results import Comparison, NameVerdict, NameVerdictKind
from recsys.evaluation.scoring import Scored, score_ranker
from recsys.evaluation.split import Split
from recsys.evaluation.tuning import SearchResult, TrialScore, search, with_values
from recsys.rankers.registry import RANKERS

CATALOGUE_TEXT = (
    "a new product's catalogue entry is the name it was first seen with in the window (catalogue data a merchant "
    "has at launch; nothing about who bought it)"
)


def window_catalogue(split: Split, es: EvalSet) -> Catalogue:
    """The names the window's new products were first seen with."""
    return Catalogue.from_interactions(split.test, es.product_ids)


def uses_names(ranker: str) -> bool:
    """Whether a registered ranker reads product names (ranks a product without fit rows from its name)."""
    return bool(getattr(RANKERS.get(ranker), "uses_names", False))


def tune_new(
    label: str,
    ranker_name: str,
    fitted: Any,
    space: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    budget: int,
    seed: int,
    es: EvalSet,
    catalogue: Catalogue,
    ks: Sequence[int],
    objective: tuple[str, int],
    headline_k: int,
    timer: Callable[[str], Any],
) -> SearchResult:
    """Search a name model's knobs on the validation new products, re-scoring one fitted ranker."""
    metric = METRICS.index(objective[0])

    def fit(values: Mapping[str, Any]) -> Any:
        return fitted.with_params(with_values({}, values)) if values else fitted

    def score(ranker: Any) -> TrialScore:
        with timer(f"tune_new/rank/{label}"):
            scored = score_ranker(ranker, es, ks, label, catalogue=catalogue)
        value = float(nanmean_or_nan(scored.values[metric, list(ks).index(objective[1])]))
        return TrialScore(value, scored.hits.at(objective[1]).count, scored.hits.at(headline_k).count)

    return search(label, "", {}, space, budget, seed, fit, score)


def plan_name_family(ks: Sequence[int], models: Sequence[str], fallback: str | None) -> list[PlannedComparison]:
    """Every name model against the fallback at every k."""
    if fallback is None:
        return []
    return [PlannedComparison(m, fallback, k, ("new_products",)) for m in models if m != fallback for k in ks]


def name_verdict(statistic: int, p_holm: float, powered: bool, alpha: float) -> NameVerdictKind:
    """The verdict of a name model (A) against the fallback (B)."""
    if np.isfinite(p_holm) and p_holm < alpha and statistic != 0:
        return "name_better" if statistic > 0 else "fallback_better"
    return "no_detectable_difference" if powered else "inconclusive"


def name_verdicts(comparisons: Sequence[Comparison], alpha: float) -> list[NameVerdict]:
    """Per model and k verdicts of the new-products family."""
    return [
        NameVerdict(
            k=c.k,
            model=c.a,
            fallback=c.b,
            verdict=name_verdict(c.statistic, c.p_holm, c.powered, alpha),
            discordant=c.discordant,
            discordant_customers=c.discordant_customers,
        )
        for c in comparisons
        if "new_products" in c.purpose
    ]


def basis_counts(scored: Mapping[str, Scored]) -> dict[str, dict[str, int]]:
    """Per model: ranked new products per basis (how many were ranked from their name)."""
    return {label: dict(s.basis) for label, s in scored.items()}
