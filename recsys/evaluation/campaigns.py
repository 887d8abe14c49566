"""The per-campaign cap study as typed results, and its generated text (the evaluate report's section).

Written once by the ``campaigns`` stage (``recsys campaigns``, recsys.evaluation.campaigns_run) as
``<evaluation dir>/campaigns/results.json`` (reports/datasets/<name>/evaluation/campaigns/); read by the evaluate
report, ``recsys summary`` and anyone else with ``read_campaign_study``. Nothing is fitted or allocated here.

A *series* is one way of sending the evaluated products: partitioned into campaigns (a campaign set: seeded
random sets of a given size, or the products launched in the same week), each campaign's audiences of size n
allocated under a per-customer cap (``recsys.allocation.solver``), or uncapped (each product's own top n: the
reference of every comparison at that n). Every series is scored on the test window like the evaluation scores a
ranker; its exposure figures count messages per customer *within* a campaign (``ExposureFigures``, over the
(campaign, customer) pairs messaged), plus the distinct customers messaged across the campaigns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from recsys.allocation.result import ExposureFigures
from recsys.evaluation.report import fmt, interval, pct
from recsys.evaluation.results import Comparison, PrecisionAtK, Record, Scalar, read_record, write_record
from recsys.evaluation.significance import verdict

SCHEMA_VERSION = 1
UNCAPPED = "uncapped"
CapStatus = Literal["reference", "better", "worse", "no_detectable_difference", "inconclusive"]
SetKind = Literal["random", "launch_week"]
STATUS_OF_VERDICT: dict[str, CapStatus] = {
    "cf_better": "better",  # A (the capped series) significantly better than B (uncapped)
    "engagement_better": "worse",
    "no_detectable_difference": "no_detectable_difference",
    "inconclusive": "inconclusive",
}
STATUS_TEXT: dict[str, str] = {
    "reference": "reference",
    "better": "significantly better",
    "worse": "significantly worse",
    "no_detectable_difference": "no detectable difference",
    "inconclusive": "inconclusive",
}


def series_label(campaign_set: str | None, cap: int | None, n: int) -> str:
    """'uncapped_n100' or 'random_100_cap2_n100': the label of a series in tables and comparisons."""
    if campaign_set is None or cap is None:
        return f"{UNCAPPED}_n{n}"
    return f"{campaign_set}_cap{cap}_n{n}"


def cap_text(cap: int | None) -> str:
    """'uncapped' or 'cap 2' for prose."""
    return UNCAPPED if cap is None else f"cap {int(cap)}"


class RecallAtK(Record):
    """recall@k and its two-way bootstrap percentile interval."""

    k: int
    value: float | None
    low: float | None
    high: float | None


class CampaignSet(Record):
    """A partition of the evaluated products into campaigns."""

    name: str  # random_10, random_100, random_1000, launch_week
    kind: SetKind
    size: int | None  # products per random campaign (the last one may be smaller); None for launch weeks
    campaigns: int
    products: int
    mean_size: float
    largest: int


class AudienceFacts(Record):
    """How full a series' audiences are and the share of the uncapped total score they keep."""

    slots: int  # n x evaluated products
    filled: int
    short_products: int  # products with fewer customers than uncapped
    full_share: float
    score_share: float | None  # allocated total score / uncapped total score


class SeriesResult(Record):
    """One series (module docstring): test metrics, the comparison with uncapped at k = n, exposure, audiences."""

    label: str
    campaign_set: str | None  # None: uncapped
    cap: int | None
    n: int
    precision: list[PrecisionAtK]  # every evaluated k <= n
    recall: list[RecallAtK]
    comparison: Comparison | None  # this series vs uncapped at k = n (None for uncapped)
    status: CapStatus
    precision_share: float | None  # precision@n / uncapped precision@n (None when that is 0)
    exposure: ExposureFigures  # within its campaigns (uncapped: the evaluated products as one send)
    uncapped_exposure: ExposureFigures | None  # the same campaigns uncapped (None for uncapped)
    distinct_customers: int  # customers messaged at least once, across the campaigns
    audiences: AudienceFacts

    def at(self, k: int) -> PrecisionAtK:
        """precision@k record (KeyError naming the ks when absent)."""
        for p in self.precision:
            if p.k == k:
                return p
        raise KeyError(f"no precision@{k} for {self.label}; ks: {[p.k for p in self.precision]}")


class CampaignStudy(Record):
    """The per-campaign cap study of one data set (module docstring)."""

    schema_version: int = SCHEMA_VERSION
    model: str
    ranker: str
    params: dict[str, Scalar]
    ks: list[int]
    level: float
    alpha: float
    power: float
    smallest_effect_ratio: float
    seed: int
    candidates: int
    audiences: list[int]  # audience sizes n
    caps: list[int]
    fit_customers: int
    evaluated_products: int
    products_with_truth: int
    campaign_sets: list[CampaignSet]
    series: list[SeriesResult]

    def uncapped(self, n: int) -> SeriesResult:
        """The uncapped reference at audience size n."""
        return self.find(None, None, n)

    def find(self, campaign_set: str | None, cap: int | None, n: int) -> SeriesResult:
        """One series; KeyError naming what was run."""
        label = series_label(campaign_set, cap, n)
        for s in self.series:
            if s.label == label:
                return s
        raise KeyError(f"no series {label!r}; series: {[s.label for s in self.series]}")

    def campaign_set(self, name: str) -> CampaignSet:
        """A campaign set by name."""
        for c in self.campaign_sets:
            if c.name == name:
                return c
        raise KeyError(f"no campaign set {name!r}; sets: {[c.name for c in self.campaign_sets]}")


def status_of(comparison: Comparison | None, alpha: float) -> CapStatus:
    """The status of a series' comparison with uncapped (the evaluation's verdict rule with A = the series)."""
    if comparison is None:
        return "reference"
    return STATUS_OF_VERDICT[verdict(comparison.statistic, comparison.p_holm, comparison.powered, alpha)]


def write_campaign_study(study: CampaignStudy, path: Path) -> Path:
    """Write the study as indented JSON (byte-stable for equal content)."""
    return write_record(study, path)


def read_campaign_study(path: Path) -> CampaignStudy:
    """Read and validate a study written by write_campaign_study (a clear error names the file and the fix)."""
    return read_record(
        CampaignStudy,
        path,
        "campaign study {path} not found: run `recsys campaigns --dataset NAME` (or `dvc repro campaigns`) first",
    )


# ----------------------------------------------------------------------------------------------
# generated text
# ----------------------------------------------------------------------------------------------


def set_text(c: CampaignSet) -> str:
    """'campaigns of 100 random products (209)' / 'launch-week campaigns (87, 1-1,203 products)'."""
    if c.kind == "random":
        return f"campaigns of {c.size:,} random products ({c.campaigns:,} campaigns)"
    return f"launch-week campaigns ({c.campaigns:,}, mean {c.mean_size:,.0f} and at most {c.largest:,} products)"


def series_row(s: SeriesResult, n: int) -> str:
    """One table row of a series at audience size n."""
    p = s.at(n)
    test = "reference" if s.comparison is None else f"{fmt(s.comparison.p_holm)}, {STATUS_TEXT[s.status]}"
    e, u = s.exposure, s.uncapped_exposure
    at_cap = "" if e.at_cap_share is None else pct(e.at_cap_share)
    before = "" if u is None else f" (uncapped {u.max_per_customer:,})"
    name = UNCAPPED if s.campaign_set is None else s.campaign_set.replace("_", " ")
    return (
        f"| {name} | {cap_text(s.cap)} | {interval(p.value, p.low, p.high)} | {p.hits:g} | {test} | "
        f"{pct(s.precision_share)} | {e.max_per_customer:,}{before} / {fmt(e.p99_per_customer)} / "
        f"{fmt(e.mean_per_customer)} | {at_cap} | {s.distinct_customers:,} | {pct(s.audiences.full_share)} | "
        f"{pct(s.audiences.score_share)} |"
    )


def study_table(study: CampaignStudy, n: int) -> str:
    """Markdown table of every series at audience size n."""
    lines = [
        f"| campaigns | cap | precision@{n} [{study.level:.0%} interval] | hits@{n} | vs uncapped (Holm p, status) | "
        "share of uncapped | messages per customer in a campaign: max / p99 / mean | customers at the cap | "
        "distinct customers | full audiences | score kept |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [series_row(s, n) for s in study.series if s.n == n]
    return "\n".join(lines)


def closing_note(study: CampaignStudy, campaign_set: str = "random_100", n: int = 100) -> str:
    """For campaigns of one set at audience size n: precision and hits at each cap against uncapped, in one sentence."""
    if n not in study.audiences or campaign_set not in {c.name for c in study.campaign_sets}:
        return f"No series of {campaign_set.replace('_', ' ')} at n = {n} in this study."
    base = study.uncapped(n).at(n)
    parts = []
    for cap in study.caps:
        s = study.find(campaign_set, cap, n)
        p = s.at(n)
        p_holm = "" if s.comparison is None else f", Holm p = {fmt(s.comparison.p_holm)}"
        parts.append(
            f"{cap_text(cap)} {fmt(p.value)} ({p.hits:g} hits; {STATUS_TEXT[s.status]}{p_holm}; "
            f"{pct(s.audiences.full_share)} of audiences full)"
        )
    return (
        f"Campaigns of {study.campaign_set(campaign_set).size:,} products at n = {n} ({study.model}): uncapped "
        f"precision@{n} {interval(base.value, base.low, base.high)} ({base.hits:g} hits); " + "; ".join(parts) + "."
    )


def campaign_section(path: Path) -> tuple[str, CampaignStudy | None]:
    """The evaluate report's section from the study's results file: (markdown, the study) or a line saying why not."""
    if not Path(path).is_file():
        return (
            "## Campaign caps: what a per-campaign cap costs\n\nNot evaluated for this data set: the study's results "
            "file does not exist (run `recsys campaigns --dataset NAME` or `dvc repro campaigns`).\n",
            None,
        )
    study = read_campaign_study(Path(path))
    return campaigns_markdown(study), study


def campaigns_markdown(study: CampaignStudy) -> str:
    """The evaluate report's section on per-campaign caps: setup, one table per audience size, the closing note."""
    sets = "; ".join(set_text(c) for c in study.campaign_sets)
    setup = (
        f"**{study.model}** (ranker `{study.ranker}`, the model the evaluation selected on validation for serving, "
        f"with its settings) is fitted on the test split's fit rows and ranks each of the {study.evaluated_products:,} "
        f"evaluated products {study.candidates} candidates deep, as the cache stores them for campaigns. The "
        f"products are sent as {sets}. Within each campaign, audiences of n customers are allocated from the "
        f"candidates under a cap on the messages one customer gets in that campaign (caps "
        f"{', '.join(str(c) for c in study.caps)}; greedy b-matching, `recsys.allocation.solver`), or uncapped (each "
        "product's own top n). Every series is scored on the test window like the evaluation scores a ranker "
        f"({study.products_with_truth:,} products with test customers) and compared with uncapped at k = n by the "
        "customer sign-flip test, Holm-corrected across the series of each n. Messages per customer are counted "
        "within a campaign (the uncapped row: every evaluated product as one send; in brackets, the same campaigns "
        "uncapped); distinct customers across all campaigns."
    )
    lines = ["## Campaign caps: what a per-campaign cap costs", "", setup, ""]
    for n in study.audiences:
        lines += [f"### Audiences of {n}", "", study_table(study, n), ""]
    biggest = max(study.audiences)
    lines += ["**Closing note.** " + closing_note(study, "random_100", 100 if 100 in study.audiences else biggest)]
    return "\n".join(lines) + "\n"
