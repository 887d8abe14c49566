"""The exposure-cap trade-off as typed results, the rule that recommends a cap, and its generated text.

Written once by the ``tradeoff`` stage (``recsys tradeoff``, recsys.evaluation.tradeoff_run) as
``<evaluation dir>/tradeoff/results.json`` (reports/datasets/<name>/evaluation/tradeoff/); read by the
evaluate report, ``recsys summary`` and anyone else with ``read_tradeoff``. Nothing is fitted or allocated here.

Recommendation rule (``recommend``; params/evaluate.yaml, block ``tradeoff``). Every tested cap c is
compared with the uncapped lists at the headline k by the evaluation's paired customer sign-flip test,
Holm-corrected across the caps, with its power (recsys.evaluation.significance). Then:

0. ``max_allowed_exposures`` is the campaign requirement: the most audiences of depth n one customer may be
   in. It is a business limit, an assumption of the params, not something the data chooses (a campaign that
   messages one person in thousands of lists is not sendable); null means uncapped lists are acceptable. A
   series is within it when its cap or its largest realised exposure count is at most the limit; when the
   uncapped lists are within it, the limit does not bind and the rule runs as without it.
1. eligible caps: the tested caps within that limit; with ``full_audiences`` (default), only those that
   leave every product's audience as long as uncapped (a cap below (slots / customers) cannot fill the lists
   it serves). None eligible: no cap is recommended (outcome ``no_cap_keeps_audiences``), or, under a binding
   limit, the loosest cap within it (outcome ``limit_shortens_audiences``).
2. a comparison is *decisive* when it is significant after Holm or powered (its minimum detectable rate
   ratio is at most ``evaluate.comparisons.smallest_effect_ratio``). When no eligible cap's comparison is
   decisive, the data cannot tell the caps apart on precision: the rule falls back to the exposure side
   and recommends the smallest eligible cap (the fewest exposures per customer with every audience still
   full); the precision cost is undetermined (outcome ``precision_undetermined``).
3. otherwise a cap *qualifies* when its precision@k point estimate keeps at least ``keep_share`` of the
   uncapped one (up to float rounding) and it is not significantly worse after Holm (a cap whose lists give
   exactly the uncapped hits, no discordant customer, counts as decisive); the smallest qualifying cap is recommended
   (outcome ``cap_keeps_precision``; an inconclusive comparison of that cap is reported as such).
4. none qualifying: without a limit, no cap is recommended (outcome ``every_cap_costs_precision``); with a
   limit, the requirement binds and the loosest eligible cap is recommended (the one closest to the ranker's
   own order; outcome ``limit_costs_precision``), and the text states its measured cost.

"No cap recommended" means serving the uncapped lists (``cache.allocation.max_exposures: null``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from recsys.allocation.exposure import ExposureAtK, ExposureMetrics
from recsys.evaluation.report import fmt, interval, pct
from recsys.evaluation.results import Comparison, PrecisionAtK, Record, Scalar, num, read_record, write_record
from recsys.evaluation.significance import verdict

SCHEMA_VERSION = 1
UNCAPPED = "uncapped"
CapStatus = Literal["reference", "better", "worse", "no_detectable_difference", "inconclusive"]
Outcome = Literal[
    "cap_keeps_precision",
    "every_cap_costs_precision",
    "limit_costs_precision",
    "limit_shortens_audiences",
    "precision_undetermined",
    "no_cap_keeps_audiences",
]
Basis = Literal["precision", "exposure", "audiences", "limit"]
STATUS_OF_VERDICT: dict[str, CapStatus] = {
    "cf_better": "better",  # A (the cap) significantly better than B (uncapped)
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


def cap_label(cap: int | None) -> str:
    """'uncapped' or 'cap_<c>': the series label of a cap in tables and comparisons."""
    return UNCAPPED if cap is None else f"cap_{int(cap)}"


def cap_text(cap: int | None) -> str:
    """'uncapped' or 'cap 50' for prose."""
    return UNCAPPED if cap is None else f"cap {int(cap)}"


class RecallAtK(Record):
    """recall@k and its two-way bootstrap percentile interval."""

    k: int
    value: float | None
    low: float | None
    high: float | None


class AudienceFacts(Record):
    """How full the served audiences of the whole fit catalogue are under a cap, and the score they keep."""

    products: int
    depth: int
    slots: int  # filled (product, customer) slots
    full_share: float  # products whose audience is as long as their uncapped audience
    short_products: int
    min_size: int
    score_share: float | None  # total served score / total uncapped score (None when the uncapped total is 0)


class CapResult(Record):
    """One cap (None = uncapped): test metrics of the evaluated products, exposure of the whole catalogue, test."""

    cap: int | None
    label: str
    precision: list[PrecisionAtK]
    recall: list[RecallAtK]
    exposure: ExposureMetrics
    audiences: AudienceFacts
    comparison: Comparison | None  # this cap vs uncapped at the headline k (None for uncapped)
    status: CapStatus
    precision_share: float | None  # precision@headline_k / uncapped precision@headline_k (None when that is 0)
    uncapped_hits_over_cap: int | None  # uncapped hits@headline_k whose customer is in more than `cap` uncapped lists

    def at(self, k: int) -> PrecisionAtK:
        """precision@k record (KeyError naming the ks when absent)."""
        for p in self.precision:
            if p.k == k:
                return p
        raise KeyError(f"no precision@{k} for {self.label}; ks: {[p.k for p in self.precision]}")


class Recommendation(Record):
    """The cap the rule recommends (None = uncapped), why, and the rule's inputs (module docstring)."""

    cap: int | None
    basis: Basis
    outcome: Outcome
    headline_k: int
    keep_share: float
    full_audiences: bool
    max_allowed_exposures: int | None  # the campaign requirement (None: uncapped lists are acceptable)
    eligible: list[int]  # caps within the limit that keep every audience as long as uncapped (when required)
    decisive: list[int]  # eligible caps whose comparison is significant or powered
    qualifying: list[int]  # eligible caps keeping >= keep_share and not significantly worse (precision basis)
    least_costly: int | None  # the eligible cap with the highest precision@headline_k (ties: the smaller cap)
    cap_without_limit: int | None  # what the rule recommends without the campaign limit (= cap when it does not bind)
    limit_binds: bool  # a limit is set and the uncapped lists exceed it
    uncapped_hits: float  # hits of the uncapped lists at the headline k
    max_discordant: int  # largest number of discordant hits among the caps' comparisons
    best_detectable_ratio: float | None  # smallest minimum-detectable rate ratio among the eligible caps' comparisons


class TradeoffResults(Record):
    """The trade-off of one ranker's audiences under every tested cap, and the recommendation."""

    schema_version: int = SCHEMA_VERSION
    model: str
    ranker: str
    params: dict[str, Scalar]
    headline_k: int
    ks: list[int]
    level: float
    alpha: float
    power: float
    smallest_effect_ratio: float
    depth: int
    candidates: int
    min_audience: int
    allocation_seed: int
    catalogue_products: int
    fit_customers: int
    reachable_customers: int  # fit customers active in the test window (the exposure metrics' reachable set)
    evaluated_products: int
    products_with_truth: int
    caps: list[CapResult]
    recommendation: Recommendation

    @property
    def uncapped(self) -> CapResult:
        """The uncapped reference."""
        return self.cap(None)

    def cap(self, cap: int | None) -> CapResult:
        """The result of one cap (None = uncapped); KeyError naming the tested caps."""
        for c in self.caps:
            if c.cap == cap:
                return c
        raise KeyError(f"cap {cap!r} was not tested; caps: {[c.cap for c in self.caps]}")


def rounded_exposure(m: ExposureMetrics) -> ExposureMetrics:
    """Exposure metrics with floats rounded to 6 significant digits (byte-stable results files)."""

    def rnd(x: float | None) -> float | None:
        return None if x is None else num(x)

    at_k = tuple(
        dataclasses.replace(
            e,
            p99_exposures=float(num(e.p99_exposures) or 0.0),
            mean_exposures=float(num(e.mean_exposures) or 0.0),
            gini=float(num(e.gini) or 0.0),
            reachable_share=rnd(e.reachable_share),
            gini_reachable=rnd(e.gini_reachable),
        )
        for e in m.at_k
    )
    return dataclasses.replace(m, at_k=at_k, mean_jaccard=rnd(m.mean_jaccard))


def status_of(comparison: Comparison | None, alpha: float) -> CapStatus:
    """The status of a cap's comparison with uncapped (the evaluation's verdict rule with A = the cap)."""
    if comparison is None:
        return "reference"
    return STATUS_OF_VERDICT[verdict(comparison.statistic, comparison.p_holm, comparison.powered, alpha)]


def decisive(status: CapStatus) -> bool:
    """A comparison that tells something: significant either way, or powered without a detectable difference."""
    return status in ("better", "worse", "no_detectable_difference")


def recommend(
    caps: Sequence[CapResult],
    headline_k: int,
    keep_share: float,
    full_audiences: bool = True,
    max_allowed_exposures: int | None = None,
) -> Recommendation:
    """Apply the rule of the module docstring to the caps' results (the uncapped one among them)."""
    if not 0.0 < keep_share <= 1.0:
        raise ValueError(f"tradeoff.keep_share must be in (0, 1], got {keep_share}")
    if max_allowed_exposures is not None and max_allowed_exposures < 1:
        raise ValueError(f"tradeoff.max_allowed_exposures must be >= 1 or null, got {max_allowed_exposures}")
    base = next((c for c in caps if c.cap is None), None)
    if base is None:
        raise ValueError("the trade-off needs the uncapped result (cap null) as the reference of every comparison")
    tested = sorted((c for c in caps if c.cap is not None), key=lambda c: int(c.cap or 0))
    binds = max_allowed_exposures is not None and largest_exposure(base) > max_allowed_exposures
    limit = max_allowed_exposures if binds else None
    allowed = [c for c in tested if limit is None or min(int(c.cap or 0), largest_exposure(c)) <= limit]
    if limit is not None and not allowed:
        raise ValueError(
            f"no tested cap is within tradeoff.max_allowed_exposures={limit}: add a cap <= {limit} to tradeoff.caps "
            f"(tested: {[c.cap for c in tested]})"
        )
    eligible = [c for c in allowed if not full_audiences or c.audiences.short_products == 0]
    p0 = base.at(headline_k).value or 0.0
    strong = [c for c in eligible if decisive(c.status) or same_hits(c, base, headline_k)]
    least = max(eligible, key=lambda c: (c.at(headline_k).value or 0.0, -int(c.cap or 0)), default=None)
    floor = keep_share * p0 * (1.0 - 1e-9)  # a share of exactly keep_share qualifies despite float rounding
    qualifying = [c for c in eligible if (c.at(headline_k).value or 0.0) >= floor and c.status != "worse"]
    outcome: Outcome
    basis: Basis
    cap: int | None
    if not eligible and limit is not None:
        cap, basis, outcome = allowed[-1].cap, "limit", "limit_shortens_audiences"
    elif not eligible:
        cap, basis, outcome = None, "audiences", "no_cap_keeps_audiences"
    elif not strong:
        cap, basis, outcome = eligible[0].cap, "exposure", "precision_undetermined"
    elif qualifying:
        cap, basis, outcome = qualifying[0].cap, "precision", "cap_keeps_precision"
    elif limit is not None:
        cap, basis, outcome = eligible[-1].cap, "limit", "limit_costs_precision"
    else:
        cap, basis, outcome = None, "precision", "every_cap_costs_precision"
    unlimited = recommend(caps, headline_k, keep_share, full_audiences).cap if limit is not None else cap
    return Recommendation(
        cap=cap,
        basis=basis,
        outcome=outcome,
        headline_k=headline_k,
        keep_share=keep_share,
        full_audiences=full_audiences,
        max_allowed_exposures=max_allowed_exposures,
        eligible=[int(c.cap or 0) for c in eligible],
        decisive=[int(c.cap or 0) for c in strong],
        qualifying=[int(c.cap or 0) for c in qualifying] if strong else [],
        least_costly=None if least is None else least.cap,
        cap_without_limit=unlimited,
        limit_binds=binds,
        uncapped_hits=base.at(headline_k).hits,
        max_discordant=max((c.comparison.discordant for c in eligible if c.comparison is not None), default=0),
        best_detectable_ratio=min(
            (
                c.comparison.mde_ratio
                for c in eligible
                if c.comparison is not None and c.comparison.mde_ratio is not None
            ),
            default=None,
        ),
    )


def largest_exposure(c: CapResult) -> int:
    """The most lists one customer is in, over the series' exposure depths (the served depth is the deepest)."""
    return max((e.max_exposures for e in c.exposure.at_k), default=0)


def same_hits(c: CapResult, base: CapResult, k: int) -> bool:
    """The cap's lists give exactly the uncapped hits at k (no discordant customer): a decisive 'no cost'."""
    return c.comparison is not None and c.comparison.discordant == 0 and c.at(k).hits == base.at(k).hits


def write_tradeoff(results: TradeoffResults, path: Path) -> Path:
    """Write the results as indented JSON (byte-stable for equal content)."""
    return write_record(results, path)


def read_tradeoff(path: Path) -> TradeoffResults:
    """Read and validate results written by write_tradeoff (a clear error names the file and the fix)."""
    return read_record(
        TradeoffResults,
        path,
        "exposure-cap trade-off results {path} not found: run `recsys tradeoff` (or `dvc repro tradeoff`) first",
    )


# ----------------------------------------------------------------------------------------------
# generated text
# ----------------------------------------------------------------------------------------------


def exposure_at(c: CapResult, k: int) -> ExposureAtK:
    """A cap's exposure metrics at cut-off k (the list depth when k is beyond it)."""
    ks = [e.k for e in c.exposure.at_k]
    return c.exposure.at(k if k in ks else max(ks))


def exposure_ks(t: TradeoffResults) -> list[int]:
    """The exposure cut-offs of the results (e.g. 10 and the served depth)."""
    return [e.k for e in t.uncapped.exposure.at_k]


def hits_text(n: float) -> str:
    """'1 hit', '4 hits'."""
    return f"{n:g} hit" + ("" if n == 1 else "s")


OUTCOME_PHRASE: dict[str, str] = {
    "cap_keeps_precision": "the smallest eligible cap that keeps the precision the rule asks for",
    "every_cap_costs_precision": "no eligible cap keeps the precision the rule asks for",
    "limit_costs_precision": "no eligible cap keeps the precision the rule asks for; the campaign limit binds",
    "limit_shortens_audiences": "every cap within the campaign limit shortens some audiences; the limit binds",
    "precision_undetermined": "precision cannot tell the eligible caps from uncapped; the exposure side decides",
    "no_cap_keeps_audiences": "every tested cap leaves some audiences shorter than uncapped",
}


def eligible_text(r: Recommendation) -> str:
    """Which caps the rule considers, in words."""
    parts = []
    if r.max_allowed_exposures is not None and r.limit_binds:
        parts.append(f"no customer in more than {r.max_allowed_exposures:,} lists")
    if r.full_audiences:
        parts.append("every audience as long as uncapped")
    return "the caps with " + " and ".join(parts) if parts else "the tested caps"


def rule_text(r: Recommendation) -> str:
    """The rule in one sentence, with its parameters."""
    limit = (
        ""
        if r.max_allowed_exposures is None
        else f" The campaign limit ({r.max_allowed_exposures:,} lists per customer) is a params assumption"
        + (
            "; it binds (uncapped lists exceed it): when no eligible cap qualifies, the loosest eligible one"
            if r.limit_binds
            else "; the uncapped lists already meet it, so it does not bind"
        )
        + "."
    )
    return (
        f"among {eligible_text(r)}, the smallest whose precision@{r.headline_k} point estimate keeps at least "
        f"{pct(r.keep_share)} of uncapped and that is not significantly worse than uncapped after Holm; when none "
        "of their comparisons is significant or powered, the smallest of them (the exposure side decides); when "
        f"none qualifies or none is eligible, no cap.{limit}"
    )


def without_limit_text(r: Recommendation) -> str:
    """What the rule gives without the campaign limit, when the limit changed the answer."""
    if not r.limit_binds or r.cap_without_limit == r.cap:
        return ""
    return f" Without the campaign limit the rule would recommend {cap_text(r.cap_without_limit)}."


def recommendation_text(t: TradeoffResults) -> str:
    """What the rule recommends and why, from the numbers (never presumes the outcome)."""
    r = t.recommendation
    k = r.headline_k
    if r.outcome == "no_cap_keeps_audiences":
        return (
            f"Every tested cap leaves some audiences shorter than uncapped ({t.depth} customers per product at "
            "most): the rule recommends no cap (`cache.allocation.max_exposures: null`)."
        )
    if r.outcome == "limit_shortens_audiences":
        chosen = t.cap(r.cap)
        return (
            f"Every tested cap within the campaign limit of {r.max_allowed_exposures:,} lists per customer leaves "
            f"some audiences shorter than uncapped; the limit binds, so the rule recommends the loosest of them, "
            f"**{cap_text(r.cap)}** ({chosen.audiences.short_products:,} audiences shorter than uncapped, the "
            f"shortest {chosen.audiences.min_size}).{without_limit_text(r)}"
        )
    if r.outcome == "precision_undetermined":
        power = (
            "none of them could detect any rate ratio"
            if r.best_detectable_ratio is None
            else f"the most sensitive could only detect a rate ratio of {fmt(r.best_detectable_ratio)} or more"
        )
        return (
            f"No comparison of an eligible cap ({eligible_text(r)}) with uncapped is significant or powered "
            f"(uncapped: {hits_text(r.uncapped_hits)} at k={k}; at most {r.max_discordant} discordant hits per "
            f"comparison of an eligible cap; {power}, against a smallest effect of interest of "
            f"{fmt(t.smallest_effect_ratio)}): the data cannot tell the eligible caps from uncapped on precision, "
            "so **the precision cost of the recommended cap is undetermined**. The rule falls back to the exposure "
            f"side — the smallest eligible cap — and recommends **{cap_text(r.cap)}**.{without_limit_text(r)}"
        )
    if r.outcome == "limit_costs_precision":
        chosen = t.cap(r.cap)
        comp = chosen.comparison
        p_text = "" if comp is None else f", Holm p = {fmt(comp.p_holm)}"
        return (
            f"No eligible cap ({eligible_text(r)}) keeps {pct(r.keep_share)} of uncapped precision@{k} without "
            f"being significantly worse after Holm. The campaign limit binds (the uncapped lists put one customer "
            f"in {largest_exposure(t.uncapped):,} lists), so the rule recommends the loosest eligible cap, "
            f"**{cap_text(r.cap)}**, and this is its measured cost: {pct(chosen.precision_share)} of the uncapped "
            f"point estimate ({chosen.at(k).hits:g} vs {hits_text(r.uncapped_hits)}; {STATUS_TEXT[chosen.status]}"
            f"{p_text}).{without_limit_text(r)}"
        )
    if r.outcome == "every_cap_costs_precision":
        text = (
            f"No eligible cap keeps {pct(r.keep_share)} of uncapped precision@{k} without being significantly worse "
            "after Holm: the rule recommends no cap (`cache.allocation.max_exposures: null`)."
        )
        if r.least_costly is not None:
            least = t.cap(r.least_costly)
            text += (
                f" The eligible cap that costs least is {cap_text(least.cap)}: {pct(least.precision_share)} of the "
                f"uncapped precision@{k} ({least.at(k).hits:g} vs {hits_text(r.uncapped_hits)}; "
                f"{STATUS_TEXT[least.status]})."
            )
        return text
    chosen = t.cap(r.cap)
    comp = chosen.comparison
    how = STATUS_TEXT[chosen.status]
    detail = ""
    if comp is not None and chosen.status == "inconclusive":
        ratio = "no ratio" if comp.mde_ratio is None else f"a rate ratio below {fmt(comp.mde_ratio)}"
        detail = f" (too few discordant hits, {comp.discordant}, to detect {ratio})"
    return (
        f"The smallest eligible cap ({eligible_text(r)}) that keeps at least {pct(r.keep_share)} of uncapped "
        f"precision@{k} and is not significantly worse after Holm is **{cap_text(r.cap)}**: it keeps "
        f"{pct(chosen.precision_share)} of the point estimate ({chosen.at(k).hits:g} vs "
        f"{hits_text(r.uncapped_hits)}); its comparison with uncapped is {how}{detail}.{without_limit_text(r)}"
    )


def cost_sentences(t: TradeoffResults) -> list[str]:
    """One sentence per cap: what it does to precision at the headline k and to exposure, from the numbers."""
    k, base = t.headline_k, t.uncapped
    out = []
    for c in t.caps:
        if c.cap is None:
            continue
        p = c.at(k)
        test = STATUS_TEXT[c.status] + ("" if c.comparison is None else f", Holm p = {fmt(c.comparison.p_holm)}")
        customers = ", ".join(
            f"in top-{e} lists {exposure_at(base, e).distinct_customers:,} -> {exposure_at(c, e).distinct_customers:,}"
            for e in exposure_ks(t)
        )
        before, after = exposure_at(base, t.depth).max_exposures, exposure_at(c, t.depth).max_exposures
        a = c.audiences
        full = (
            "every audience full"
            if a.short_products == 0
            else f"{a.short_products:,} audiences shorter than uncapped (shortest {a.min_size})"
        )
        out.append(
            f"- **{cap_text(c.cap)}**: precision@{k} {interval(p.value, p.low, p.high)} ({hits_text(p.hits)}; "
            f"{pct(c.precision_share)} of uncapped; {test}); distinct customers {customers}; largest exposure count "
            f"{before:,} -> {after:,}; {full}; {pct(a.score_share)} of the uncapped total score."
        )
    return out


def concentration_text(t: TradeoffResults) -> str:
    """Where the uncapped hits come from: how many go to customers above each cap (empty when there is no hit)."""
    base = t.uncapped.at(t.headline_k).hits
    capped = [c for c in t.caps if c.cap is not None and c.uncapped_hits_over_cap is not None]
    if base <= 0 or not capped:
        return ""
    parts = ", ".join(f"{c.uncapped_hits_over_cap} under {cap_text(c.cap)}" for c in capped)
    return (
        f"Of the {hits_text(base)} of the uncapped lists at k={t.headline_k}, the number that go to customers who are "
        f"in more uncapped lists of depth {t.depth} than a cap allows: {parts}. Under a cap such a customer keeps at "
        "most `cap` of those lists, so its hits survive only in the lists the allocation keeps it in."
    )


def tradeoff_table(t: TradeoffResults) -> str:
    """Markdown table: one row per cap."""
    k, eks = t.headline_k, exposure_ks(t)
    at = " / ".join(f"@{e}" for e in eks)
    lines = [
        f"| cap | precision@{k} [{t.level:.0%} interval] | hits@{k} | vs uncapped (Holm p, status) | "
        f"distinct customers {at} | max exposures {at} | Gini @{t.depth} | top-10 Jaccard | "
        f"reachable used @{t.depth} | full audiences |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in t.caps:
        p = c.at(k)
        e_n = exposure_at(c, t.depth)
        test = "reference" if c.comparison is None else f"{fmt(c.comparison.p_holm)}, {STATUS_TEXT[c.status]}"
        customers = " / ".join(f"{exposure_at(c, e).distinct_customers:,}" for e in eks)
        most = " / ".join(f"{exposure_at(c, e).max_exposures:,}" for e in eks)
        lines.append(
            f"| {cap_text(c.cap)} | {interval(p.value, p.low, p.high)} | {p.hits:g} | {test} | {customers} | {most} "
            f"| {fmt(e_n.gini)} | {fmt(c.exposure.mean_jaccard)} | {pct(e_n.reachable_share)} | "
            f"{pct(c.audiences.full_share)} |"
        )
    return "\n".join(lines)


def tradeoff_markdown(t: TradeoffResults) -> str:
    """The evaluate report's section on exposure caps: setup, table, what each cap costs, the recommendation."""
    r = t.recommendation
    setup = (
        f"**{t.model}** (ranker `{t.ranker}`, the evaluation's default ranker, with its validation-chosen settings) "
        f"is fitted on the test split's fit rows. Every one of the {t.catalogue_products:,} products with fit rows "
        f"competes for the {t.fit_customers:,} fit customers: audiences of depth {t.depth} are allocated from each "
        f"product's top-{t.candidates} candidates under each cap (no customer in more than `cap` lists of depth "
        f"{t.depth}), as the cache serves them. The {t.evaluated_products:,} evaluated products "
        f"({t.products_with_truth:,} with test customers) are scored on the test window as in the evaluation; "
        f"each cap is compared with uncapped at k={t.headline_k} by the customer sign-flip test, Holm-corrected "
        f"across the {len(t.caps) - 1} caps. Reachable customers: the {t.reachable_customers:,} fit customers "
        "active in the test window."
    )
    lines = [
        "## Exposure caps: what a cap costs",
        "",
        setup,
        "",
        tradeoff_table(t),
        "",
        *cost_sentences(t),
        "",
        concentration_text(t),
        "",
        f"**Recommended cap.** Rule: {rule_text(r)}. {recommendation_text(t)}",
    ]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"
