"""What the results say, in a few generated sentences: the openings of the reports and the "What we found" blocks.

Every function takes typed results (``recsys.evaluation.results.EvaluationSummary``,
``recsys.evaluation.campaigns.CampaignStudy``, the cache stage's checks) and returns text built from their
fields; no number is typed here. Sentence functions return one sentence, or ``""`` when the results do not hold
what the sentence needs, so a new sentence is one more function in ``finding_sentences``. They iterate over what
the results hold (the models, the cut-offs, the verdicts); the only depth named is the summary's own
``protocol.headline_k``.

- report openings: ``question_markdown`` (what the evaluation asks), ``answer_markdown`` (the answer at the
  headline depth), ``verdicts_brief_markdown`` (the per-k verdicts, one line each);
- findings: ``lead_sentence``, ``depth_sentence``, ``cf_sentence``, ``new_products_sentence``,
  ``served_sentence`` / ``cap_sentence``; ``findings_markdown`` joins them for one data set (reports/summary.md and
  README, between the markers of ``recsys.reporting.summary``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from recsys.cache.checks import CacheChecks
from recsys.evaluation.campaigns import CampaignStudy, closing_note
from recsys.evaluation.report import VERDICT_TEXT, fmt, interval, ks_text, pct, verdict_phrase
from recsys.evaluation.results import EvaluationSummary, KVerdict, ModelResult, PrecisionAtK

GROUP_TEXT: dict[str, str] = {
    "cf": "collaborative filtering",
    "engagement": "engagement ranking",
    "content": "name-content ranking",
    "baseline": "a baseline",
}


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def hits_text(n: float) -> str:
    """'1 hit', '17 hits'."""
    return f"{n:g} hit" + ("" if n == 1 else "s")


def lift_text(p: PrecisionAtK, summary: EvaluationSummary) -> str:
    """'82× random targeting' (empty when random's exact expectation is 0 or missing)."""
    rnd = summary.reference("random_expected").at(p.k).value
    if not rnd or p.value is None:
        return ""
    return f"{p.value / rnd:.3g}× random targeting"


def ceiling_text(p: PrecisionAtK, summary: EvaluationSummary) -> str:
    """'0.3% of the oracle ceiling' (empty when the ceiling is 0 or missing)."""
    top = summary.reference("oracle").at(p.k).value
    if not top or p.value is None:
        return ""
    return f"{pct(p.value / top)} of the oracle ceiling"


def leaders(summary: EvaluationSummary) -> dict[int, ModelResult]:
    """The deployable model with the highest test precision at each k (ties: the first listed); reference rows
    (``truth_category``: what knowing the generator's categories reaches) are never a leader."""
    out: dict[int, ModelResult] = {}
    for k in summary.protocol.ks:
        scored = [m for m in summary.models if m.group != "reference" and any(p.k == k for p in m.precision)]
        if scored:
            out[k] = max(scored, key=lambda m: m.at(k).value or 0.0)
    return out


def headline_leader(summary: EvaluationSummary) -> ModelResult | None:
    """The model the headline is about: the recommended default ranker, else the best at the headline k."""
    if summary.default_ranker is not None:
        return summary.model(summary.default_ranker.label)
    return leaders(summary).get(summary.protocol.headline_k)


# ----------------------------------------------------------------------------------------------
# report openings
# ----------------------------------------------------------------------------------------------


def question_markdown(summary: EvaluationSummary, dataset: str) -> str:
    """What the evaluation asks, with the data set, its test window, the depths and the groups compared."""
    p, test = summary.protocol, summary.split("test")
    groups = f"collaborative filtering ({', '.join(p.cf_models)}) against engagement ranking " + (
        f"({', '.join(p.engagement_models)})"
    )
    return (
        f"**The question.** For every product, which customers will engage with it next? On data set `{dataset}`, "
        f"{len(summary.models)} rankers each rank the customers for each of the {test.evaluated_products:,} products "
        f"seen both before and in the test window ({test.cutoff[:10]}, {test.window_days:.0f} days); a ranker is "
        f"judged by the share of its top-k customers who engage with the product in that window (precision@k, "
        f"k = {ks_text(p.ks)}; the headline depth is k = {p.headline_k}), and {groups} is tested at every k.\n"
    )


def answer_markdown(summary: EvaluationSummary) -> str:
    """The answer at the headline depth: the leader, how sure, against random and the ceiling."""
    k = summary.protocol.headline_k
    lead = lead_sentence(summary)
    if not lead:
        return f"**The answer at k = {k}.** No deployable model was evaluated.\n"
    return f"**The answer at k = {k}.** {lead} {depth_sentence(summary)}".rstrip() + "\n"


def cf_question_markdown(summary: EvaluationSummary, dataset: str) -> str:
    """What the CF-vs-engagement report asks, naming the groups and their validation-chosen representatives."""
    p = summary.protocol
    pair = (
        f" Each group is represented by its model with the best validation objective ({summary.verdicts[0].cf_model} "
        f"and {summary.verdicts[0].engagement_model}), compared at every k = {ks_text(p.ks)} by a customer sign-flip "
        "test, Holm-corrected."
        if summary.verdicts
        else ""
    )
    return (
        f"**The question.** On data set `{dataset}`, does collaborative filtering ({', '.join(p.cf_models)}), which "
        "learns from customers who engaged with the same products, find a product's next customers better than "
        f"engagement ranking ({', '.join(p.engagement_models)}), which targets the most engaged customers "
        f"everywhere?{pair}\n"
    )


def verdicts_brief_markdown(summary: EvaluationSummary) -> str:
    """The CF-vs-engagement verdict at every k (one line each) and the overall sentence."""
    if not summary.verdicts:
        return "**Verdicts.** " + summary.overall + "\n"
    v0 = summary.verdicts[0]
    lines = [
        f"**Verdicts** — {v0.cf_model} (collaborative filtering) vs {v0.engagement_model} (engagement), "
        "Holm-corrected:",
        "",
    ]
    lines += [f"- k = {v.k}: **{verdict_phrase(v)}**" for v in summary.verdicts]
    lines += ["", f"**Overall:** {summary.overall}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# finding sentences
# ----------------------------------------------------------------------------------------------


def lead_sentence(summary: EvaluationSummary) -> str:
    """The model chosen on validation to serve, its test precision at the headline k (lift over random, share of the
    ceiling) and what the test window says of its lead over the validation runner-up; without a choice, the best
    model on test."""
    k = summary.protocol.headline_k
    best = headline_leader(summary)
    if best is None:
        return ""
    p = best.at(k)
    extras = ", ".join(x for x in (lift_text(p, summary), ceiling_text(p, summary)) if x)
    score = f"precision@{k} {interval(p.value, p.low, p.high)} ({hits_text(p.hits)}{', ' + extras if extras else ''})"
    group = GROUP_TEXT.get(best.group, best.group)
    d = summary.default_ranker
    if d is None or d.label != best.label:
        return f"{best.label} ({group}) has the highest test precision at k = {k}: {score}."
    text = f"{best.label} ({group}), chosen on the validation window to serve, scores {score} on the test window"
    if d.runner_up is not None:
        p_text = f"Holm p = {fmt(d.p_holm)}"
        if d.significant:
            text += f"; the test window confirms its lead over the validation runner-up {d.runner_up} ({p_text})"
        elif d.reversed:
            text += f"; the test window reverses it: {d.runner_up} is significantly better ({p_text})"
        else:
            text += f"; the test window cannot tell it from the validation runner-up {d.runner_up} ({p_text})"
    return text + "."


def depth_sentence(summary: EvaluationSummary) -> str:
    """Whether the headline leader also leads at the other depths (and who does where it does not)."""
    by_k = leaders(summary)
    best = headline_leader(summary)
    if best is None or len(by_k) < 2:
        return ""
    own = [k for k, m in by_k.items() if m.label == best.label]
    if len(own) == len(by_k):
        return f"It has the highest test precision at every depth evaluated (k = {ks_text(list(by_k))})."
    others: dict[str, list[int]] = {}
    for k, m in by_k.items():
        if m.label != best.label:
            others.setdefault(m.label, []).append(k)
    parts = [f"{label} first at k = {ks_text(ks)}" for label, ks in others.items()]
    rest = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    where = f"at k = {ks_text(own)}" if own else "at no depth"
    return f"It has the highest test precision {where}; elsewhere the point estimates put {rest}."


def _verdict_meaning(kind: str) -> str:
    """What a verdict means for the reader."""
    return {
        "cf_better": "collaborative filtering finds significantly more customers",
        "engagement_better": "engagement ranking finds significantly more customers",
        "no_detectable_difference": "the test had the power to see a difference of interest and saw none",
        "inconclusive": "not significant, and the test lacked the power to rule out a difference of interest",
    }[kind]


def cf_sentence(summary: EvaluationSummary) -> str:
    """Collaborative filtering vs engagement, grouped by verdict over the depths, with what each verdict means."""
    verdicts: Sequence[KVerdict] = summary.verdicts
    if not verdicts:
        return ""
    head = f"Collaborative filtering ({verdicts[0].cf_model}) against engagement ({verdicts[0].engagement_model})"
    kinds = list(dict.fromkeys(v.verdict for v in verdicts))
    if len(kinds) == 1:
        hits = [v.discordant for v in verdicts]
        span = f"{min(hits)}" if min(hits) == max(hits) else f"{min(hits)}-{max(hits)}"
        return (
            f"{head}: {VERDICT_TEXT[kinds[0]]} at every depth ({span} discordant hits per comparison) — "
            f"{_verdict_meaning(kinds[0])}."
        )
    parts = [
        f"{VERDICT_TEXT[kind]} at k = {ks_text([v.k for v in verdicts if v.verdict == kind])} "
        f"({_verdict_meaning(kind)})"
        for kind in kinds
    ]
    return f"{head}: " + "; ".join(parts) + "."


NAME_VERDICT_TEXT: dict[str, str] = {
    "name_better": "the name finds significantly more of their customers",
    "fallback_better": "the fallback finds significantly more",
    "no_detectable_difference": "no detectable difference",
    "inconclusive": "inconclusive",
}


def new_products_sentence(summary: EvaluationSummary) -> str:
    """How many test-window products are new (no earlier rows) and, when the evaluation ranked them from their names,
    what the model chosen for them on validation achieves against the fallback at the headline k."""
    test = summary.split("test")
    if not test.truth_products:
        return ""
    share = test.truth_products_unseen / test.truth_products
    text = (
        f"{pct(share)} of the products customers engaged with in the test window ({test.truth_products_unseen:,} of "
        f"{test.truth_products:,}) had no earlier rows"
    )
    new, k = summary.new_products, summary.protocol.headline_k
    chosen = summary.selection.new_products if summary.selection is not None else None
    model = next((m for m in new.models if chosen is not None and m.label == chosen.label), None) if new else None
    if new is None or chosen is None or model is None or not any(p.k == k for p in model.precision):
        return text + ": only their names can place them, and they are scored separately (evaluate report)."
    p = model.at(k)
    text += (
        f"; ranked from the name each was first seen with, {model.label} (chosen on validation for new products) "
        f"scores precision@{k} {interval(p.value, p.low, p.high)} ({hits_text(p.hits)}) on them"
    )
    fallback = next((m for m in new.models if m.label == new.fallback), None)
    verdict = next((v for v in new.verdicts if v.k == k and v.model == model.label), None)
    if fallback is not None and any(q.k == k for q in fallback.precision) and fallback.label != model.label:
        text += f", against {fmt(fallback.at(k).value)} for the {fallback.label} fallback"
    if verdict is not None:
        text += f" ({NAME_VERDICT_TEXT.get(verdict.verdict, verdict.verdict)})"
    return text + "."


def served_sentence(checks: CacheChecks | None) -> str:
    """What the served configuration achieves: the cache's own measured figure (recsys.cache.figures), or why none."""
    if checks is None:
        return ""
    cap = checks.allocation.max_exposures
    config = f"{checks.ranker}, audiences of {checks.n}" + ("" if cap is None else f", capped at {cap} per customer")
    served = checks.served
    k = served.headline_k or checks.n
    p = served.at(k)
    if served.status != "measured" or p is None:
        return f"The served configuration ({config}) is not measured ({served.reason})."
    return (
        f"The served configuration ({config}) scores precision@{k} {interval(p.value, p.low, p.high)} "
        f"({hits_text(p.hits)}) on the test window."
    )


def cap_sentence(study: CampaignStudy | None) -> str:
    """What a per-campaign cap costs (campaigns of 100 products, audiences of 100), from the campaign study."""
    if study is None:
        return ""
    return closing_note(study)


def finding_sentences(
    summary: EvaluationSummary,
    study: CampaignStudy | None = None,
    checks: CacheChecks | None = None,
    served: bool = False,
) -> list[str]:
    """The findings of one data set, in reading order (empty sentences dropped)."""
    sentences = [
        lead_sentence(summary),
        depth_sentence(summary),
        cf_sentence(summary),
        new_products_sentence(summary),
        served_sentence(checks) if served else "",
        cap_sentence(study),
    ]
    return [s for s in sentences if s]


def findings_markdown(
    dataset: str,
    summary: EvaluationSummary,
    study: CampaignStudy | None = None,
    checks: CacheChecks | None = None,
    served: bool = False,
    link: str = "",
) -> str:
    """One data set's "what we found" paragraph: its name (linked to its evaluate report) and its sentences."""
    name = f"[`{dataset}`]({link})" if link else f"`{dataset}`"
    tag = " (served)" if served else ""
    return f"**{name}{tag}.** " + " ".join(finding_sentences(summary, study, checks, served)) + "\n"


# ----------------------------------------------------------------------------------------------
# where a report's numbers come from
# ----------------------------------------------------------------------------------------------

RESULT_FILES: tuple[tuple[str, str], ...] = (
    ("summary.json", "the typed `EvaluationSummary`"),
    ("metrics_at_k.csv", "every metric at every k"),
    ("campaigns/results.json", "the per-campaign cap study, typed `CampaignStudy`"),
    ("report.md", "the same results as a plain-text report"),
)


def sources_markdown(results: Path, html_dir: Path) -> str:
    """Where the report's numbers come from: links (relative to the report's folder) to the result files that exist."""
    links = []
    for name, what in RESULT_FILES:
        path = results / name
        if path.is_file():
            href = Path(os.path.relpath(path, html_dir)).as_posix()
            links.append(f"[`{href}`]({href}) ({what})")
    listed = "; ".join(links) if links else f"`{results.name}/` (no result file found)"
    return (
        "Every number and sentence of this report is generated from the results the `evaluate` and `campaigns` "
        f"stages wrote once: {listed}. This report fits nothing.\n"
    )
