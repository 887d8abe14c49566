"""Typed results of the evaluation: ``EvaluationSummary`` is written once by the evaluate stage and read by everyone.

Written with ``model_dump_json`` (``write_summary``), read with ``model_validate_json`` (``read_summary``)
by both evaluation notebooks, ``recsys.reporting.summary`` and (later) the dashboard. Verdicts are
data (``KVerdict.verdict``); prose is rendered from them (``recsys.evaluation.report``) and never
parsed back. Floats are rounded to 6 significant digits and non-finite values are ``None`` so the
file is byte-stable. Run-specific wall times are not in it (``timings.json`` next to it, git-ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import JsonValue

from recsys.records import Record as Record
from recsys.records import num as num  # the evaluation modules import both from here

SCHEMA_VERSION = 2
Verdict = Literal["cf_better", "no_detectable_difference", "engagement_better", "inconclusive"]
NameVerdictKind = Literal["name_better", "no_detectable_difference", "fallback_better", "inconclusive"]
Group = Literal["cf", "engagement", "content", "names", "category", "learned", "baseline", "reference"]
NON_DEPLOYABLE: frozenset[str] = frozenset({"random", "truth_category"})  # rankers never chosen nor served
Scalar = float | int | str | bool | None


R = TypeVar("R", bound=Record)


def write_record(record: Record, path: Path) -> Path:
    """Write a result record as indented JSON (byte-stable for equal content); the parent directory is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def read_record(kind: type[R], path: Path, missing: str) -> R:
    """Read and validate a result record; a missing file raises FileNotFoundError with `missing` (what and the fix)."""
    if not Path(path).is_file():
        raise FileNotFoundError(missing.format(path=path))
    return kind.model_validate_json(Path(path).read_text(encoding="utf-8"))


class Protocol(Record):
    """How the numbers were produced (stated at the top of the evaluate report)."""

    test_quantile: float
    validation: str
    undated_policy: str
    truth_events: list[str] | None
    ks: list[int]
    headline_k: int
    objective_metric: str
    objective_k: int
    tuning_budget: dict[str, int]
    tuning_seed: int
    seed: int
    level: float
    n_boot: int
    alpha: float
    power: float
    smallest_effect_ratio: float
    cf_models: list[str]
    engagement_models: list[str]


class SplitFacts(Record):
    """Dates and sizes of one split (validation or test) and of its evaluation set."""

    name: str
    cutoff: str
    end: str | None
    window_days: float
    fit_rows: int
    truth_rows: int
    exclude_rows: int
    fit_customers: int
    truth_customers: int
    truth_customers_unseen: int
    truth_customers_unseen_share: float | None
    truth_products: int
    truth_products_unseen: int
    evaluated_products: int
    evaluated_with_truth: int
    ranked_products: int
    new_products: int
    relevant_pairs: int
    reachable_pairs: int
    truth_dispersion: float


class UndatedFacts(Record):
    """The undated rows and what the chosen policy does with them (recsys.evaluation.split.undated_facts)."""

    policy: str
    undated_rows: int
    undated_customers: int
    customers_known_only_undated: int
    known_only_undated_truth_customers: int
    excluded_truth_pairs: int


class Trial(Record):
    """One configuration scored on the validation window."""

    index: int
    params: dict[str, Scalar]
    objective: float | None
    hits_objective_k: int
    hits_headline_k: int
    chosen: bool


class Tuning(Record):
    """The search of one model on validation: its space, every trial and the chosen values."""

    model: str
    space: list[dict[str, list[Scalar]]]
    grid_size: int
    fits: int
    trials: list[Trial]
    chosen: dict[str, Scalar]


class PrecisionAtK(Record):
    """precision@k, its quasi-Poisson Garwood interval, hits, dispersion, two-way bootstrap percentile interval."""

    k: int
    value: float | None
    low: float | None
    high: float | None
    hits: float
    phi: float | None
    boot_low: float | None
    boot_high: float | None


class ModelResult(Record):
    """One model's test result with the settings it was tested with."""

    label: str
    ranker: str
    group: Group
    tuned: bool
    params: dict[str, Scalar]
    validation_objective: float | None
    precision: list[PrecisionAtK]

    def at(self, k: int) -> PrecisionAtK:
        """precision@k record."""
        return next(p for p in self.precision if p.k == k)


class Reference(Record):
    """random_expected (exact expectation) or oracle (ceiling) precision per k; hits are expected hits for random."""

    label: str
    precision: list[PrecisionAtK]

    def at(self, k: int) -> PrecisionAtK:
        """precision@k record."""
        return next(p for p in self.precision if p.k == k)


class Comparison(Record):
    """A paired comparison of precision@k (A - B) in the report's family (recsys.evaluation.significance)."""

    a: str
    b: str
    k: int
    purpose: list[str]
    hits_a: int
    hits_b: int
    discordant: int
    discordant_customers: int
    overdispersion: float | None
    statistic: int
    difference: float | None
    diff_low: float | None
    diff_high: float | None
    p_value: float
    p_method: str
    p_holm: float
    significant: bool
    mde_ratio: float | None
    mde_precision: float | None
    powered: bool


class KVerdict(Record):
    """The verdict at one k: CF model vs engagement model (both chosen on validation)."""

    k: int
    verdict: Verdict
    cf_model: str
    engagement_model: str
    discordant: int  # hits one model has on a customer and the other has not (what the test rests on)
    discordant_customers: int


class Coverage(Record):
    """Does the seeded random ranker's interval cover the exact random expectation at k?"""

    k: int
    expected: float | None
    low: float | None
    high: float | None
    covers: bool


class DefaultChoice(Record):
    """The deployable model chosen on validation at the headline k, and what the test window says of its lead.

    ``value``/``low``/``high``: its test precision@k; ``leads_at_k``: the ks at which it has the highest test
    precision; ``runner_up``: the validation runner-up; ``p_holm``/``significant``: the test comparison of the two
    at the headline k (significant = it beats the runner-up on test), ``reversed``: the runner-up beats it on test.
    """

    k: int
    label: str
    ranker: str
    value: float | None
    low: float | None
    high: float | None
    leads_at_k: list[int]
    runner_up: str | None
    p_holm: float | None
    significant: bool
    reversed: bool = False
    chosen_on: Literal["validation"] = "validation"


class ValidationScore(Record):
    """One model's validation objective (its chosen settings) on one product set: the basis of a selection."""

    label: str
    ranker: str
    metric: str
    k: int
    value: float | None
    hits: int


class SelectedModel(Record):
    """A model chosen on validation, with every setting it is built with (``make_ranker(ranker, settings)``)."""

    label: str
    ranker: str
    settings: dict[str, JsonValue]
    validation: ValidationScore


class Selection(Record):
    """What the evaluate stage chose on validation for serving: the cache and the service build exactly this.

    ``products``: the ranker of products with a history; ``new_products``: the ranker of products without fit rows
    (catalogue names, ``/audiences/by-name``). Chosen by the best validation objective at the headline k (ties:
    more validation hits, then the order of params/evaluate.yaml); the test window only confirms (the summary's
    ``default_ranker`` and ``new_products``).
    """

    schema_version: int = 1
    dataset: str | None
    rule: str
    headline_k: int
    products: SelectedModel
    runner_up: SelectedModel | None
    new_products: SelectedModel | None
    new_products_runner_up: SelectedModel | None


class NameVerdict(Record):
    """A name model against the fallback on new products at one k."""

    k: int
    model: str
    fallback: str
    verdict: NameVerdictKind
    discordant: int
    discordant_customers: int


class NewProductsResult(Record):
    """Products sold in the test window without fit rows, ranked from the name they were first seen with."""

    catalogue: str
    products: int
    with_truth: int
    ranked: int
    models: list[ModelResult]
    references: list[Reference]
    tuning: list[Tuning]
    validation: list[ValidationScore]
    basis: dict[str, dict[str, int]]
    fallback: str | None
    comparisons: list[Comparison]
    verdicts: list[NameVerdict]


class ClaimRow(Record):
    """One figure of the original write-up next to the measured one (case-study layout only)."""

    claim: str
    claimed: str
    measured: str


class EvaluationSummary(Record):
    """Everything the evaluate stage concluded, typed."""

    schema_version: int = SCHEMA_VERSION
    protocol: Protocol
    splits: list[SplitFacts]
    undated: UndatedFacts
    models: list[ModelResult]
    references: list[Reference]
    tuning: list[Tuning]
    comparisons: list[Comparison]
    verdicts: list[KVerdict]
    overall: str
    random_coverage: list[Coverage]
    default_ranker: DefaultChoice | None
    skipped_models: dict[str, str]
    slice_shares: dict[str, dict[str, float | None]] | None
    case_study: list[ClaimRow] | None
    validation: list[ValidationScore] = []
    selection: Selection | None = None
    new_products: NewProductsResult | None = None

    def split(self, name: str) -> SplitFacts:
        """The split facts by name ('validation' or 'test')."""
        return next(s for s in self.splits if s.name == name)

    def model(self, label: str) -> ModelResult:
        """A model's result by label (KeyError naming the labels when absent)."""
        for m in self.models:
            if m.label == label:
                return m
        raise KeyError(f"no model {label!r} in the summary; models: {[m.label for m in self.models]}")

    def reference(self, label: str) -> Reference:
        """random_expected or oracle."""
        return next(r for r in self.references if r.label == label)


def write_summary(summary: EvaluationSummary, path: Path) -> Path:
    """Write the summary as indented JSON (byte-stable for equal content)."""
    return write_record(summary, path)


def read_summary(path: Path) -> EvaluationSummary:
    """Read and validate a summary written by write_summary (a clear error names the file and the fix)."""
    return read_record(
        EvaluationSummary,
        path,
        "evaluation summary {path} not found: run `recsys evaluate` (or `dvc repro evaluate`) first",
    )


def read_selection(path: Path) -> Selection:
    """Read the evaluate stage's selection (a clear error names the file and the fix)."""
    return read_record(
        Selection,
        path,
        "selection {path} not found: run `recsys evaluate --dataset NAME` (or `dvc repro evaluate@NAME`) first",
    )
