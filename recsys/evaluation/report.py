"""Generated text of the evaluation, rendered from the typed summary (recsys.evaluation.results).

Every sentence is computed from the numbers of the data set it describes; nothing here presumes a
conclusion. The notebooks and ``reports/evaluation/report.md`` use the same functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from recsys.evaluation.results import Comparison, EvaluationSummary, KVerdict, NameVerdict

VERDICT_TEXT: dict[str, str] = {
    "cf_better": "CF better",
    "no_detectable_difference": "no detectable difference",
    "engagement_better": "engagement better",
    "inconclusive": "inconclusive",
}


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for prose: `digits` significant digits, 'n/a' when missing."""
    if x is None or not math.isfinite(float(x)):
        return "n/a"
    return f"{float(x):.{digits}g}"


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal."""
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{100.0 * float(x):.1f}%"


def interval(value: float | None, low: float | None, high: float | None) -> str:
    """'v [lo, hi]'."""
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"


def ks_text(ks: Sequence[int]) -> str:
    """'5, 10 and 20' ('none' for no k)."""
    words = [str(k) for k in ks]
    if not words:
        return "none"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def verdict_phrase(v: KVerdict | NameVerdict, texts: Mapping[str, str] = VERDICT_TEXT) -> str:
    """The verdict of one k as words from `texts` (inconclusive says how many discordant hits it rests on)."""
    if v.verdict == "inconclusive":
        return f"inconclusive ({v.discordant} discordant hits)"
    return texts.get(v.verdict, v.verdict)


def overall_sentence(verdicts: Sequence[KVerdict]) -> str:
    """One sentence derived from the per-k verdicts (grouped by verdict, in k order)."""
    if not verdicts:
        return "No CF-vs-engagement verdict: the CF or the engagement group has no evaluated model."
    cf, eng = verdicts[0].cf_model, verdicts[0].engagement_model
    head = f"{cf} (collaborative filtering) vs {eng} (engagement), both chosen on validation"
    kinds = list(dict.fromkeys(v.verdict for v in verdicts))
    if len(kinds) == 1:
        kind = kinds[0]
        hits = [v.discordant for v in verdicts]
        tail = f" ({min(hits)}-{max(hits)} discordant hits per comparison)" if kind == "inconclusive" else ""
        return f"{head}: {VERDICT_TEXT[kind]} at every k ({ks_text([v.k for v in verdicts])}){tail}."
    parts = []
    for kind in kinds:
        group = [v for v in verdicts if v.verdict == kind]
        if kind == "inconclusive":
            parts.append("inconclusive at " + ", ".join(f"k={v.k} ({v.discordant} discordant hits)" for v in group))
        else:
            parts.append(f"{VERDICT_TEXT[kind]} at k={ks_text([v.k for v in group])}")
    return f"{head}: the verdict depends on k — " + "; ".join(parts) + "."


def headline(verdicts: Sequence[KVerdict]) -> str:
    """A short title from the per-k verdicts: 'als (CF) vs activity (engagement): inconclusive at every k'."""
    if not verdicts:
        return "no CF-vs-engagement comparison was possible"
    kinds = list(dict.fromkeys(v.verdict for v in verdicts))
    tail = f"{VERDICT_TEXT[kinds[0]]} at every k" if len(kinds) == 1 else "the verdict depends on k"
    return f"{verdicts[0].cf_model} (CF) vs {verdicts[0].engagement_model} (engagement): {tail}"


def protocol_markdown(s: EvaluationSummary) -> str:
    """The protocol, stated at the top of the report."""
    p = s.protocol
    val, test = s.split("validation"), s.split("test")
    fam = len(s.comparisons)
    validation = (
        "matched to the test window's length" if p.validation == "matched" else f"at the {p.validation} date quantile"
    )
    lines = [
        "## Protocol",
        "",
        f"- **Splits by time.** Test cutoff at the {p.test_quantile:g} date quantile of the dated rows "
        f"({test.cutoff[:19]}); "
        f"validation cutoff {validation} ({val.cutoff[:19]}). Tuning fits on the {val.fit_rows:,} rows before the "
        "validation "
        f"cutoff and scores the validation window ({val.window_days:.1f} days, {val.truth_rows:,} rows); every model "
        "is then "
        f"refitted once with its chosen settings on the {test.fit_rows:,} rows before the test cutoff and scored once "
        "on the test "
        f"window ({test.window_days:.1f} days, {test.truth_rows:,} rows). Every fit timestamp precedes every "
        "validation timestamp, "
        "which precedes every test timestamp.",
        f"- **Undated rows: `{p.undated_policy}`** ({undated_policy_text(p.undated_policy)}).",
        f"- **Tuning.** Objective {p.objective_metric}@{p.objective_k} on the validation window (macro over "
        "products); budget "
        f"{budget_text(p.tuning_budget)} (whole grid when smaller, else a seeded random sample, seed "
        f"{p.tuning_seed}); ALS "
        "iterations and content affinity weights are re-scored without refitting. Ties: more validation hits at the "
        "headline k, then the earlier trial.",
        f"- **Intervals ({p.level:.0%}).** precision@k: exact Poisson (Garwood) interval of the hit count inflated by "
        "the dispersion "
        "phi = max(1, V / H, phi_R), V = sum over products of H_p^2 + sum over customers of H_c^2 - H (two-way "
        "cluster-robust variance; "
        "the two-way product x customer bootstrap's variance minus its double count of independent hits), phi_R = "
        "sum R_c^2 / sum R_c "
        "over customers' numbers R_c of reachable relevant products (the dispersion of a ranker that targets the "
        "same customers "
        f"for every product; {fmt(test.truth_dispersion)} on the test window). Other metrics and differences: two-way "
        "(product x "
        f"customer) Poisson bootstrap, {p.n_boot} replicates, percentile intervals.",
        "- **Tests.** Customer-cluster sign-flip test of the hit difference (exact distribution), two-sided. Family: "
        f"{fam} "
        f"comparison(s) — {family_text(s.comparisons)}; Holm correction at alpha = {p.alpha:g}.",
        f"- **Power.** For each comparison, the minimum detectable rate ratio at {p.power:.0%} power and level alpha "
        "/ m "
        f"(m = {fam}): delta* = (z_(1-a/2) + z_power) * sqrt(max(sum d_c^2, phi_R sum |d_c|)) / sum |d_c| over the "
        "customers' "
        "hit differences d_c, "
        "ratio = (1 + delta*) / (1 - delta*). A non-significant comparison is 'no detectable difference' only when "
        "that ratio "
        f"is at most {p.smallest_effect_ratio:g} (the smallest effect of interest), else 'inconclusive (N hits)'.",
        f"- **Verdict groups.** CF: {', '.join(p.cf_models)}; engagement: {', '.join(p.engagement_models)}; the "
        "representative of each group is its model with the best validation objective (ties: more validation hits "
        "at the headline k, then the first listed).",
    ]
    return "\n".join(lines) + "\n"


def budget_text(budget: dict[str, int]) -> str:
    """'4 fits per model (itemknn 6, bpr 2)'."""
    other = [f"{m} {n}" for m, n in budget.items() if m != "default"]
    return f"{budget.get('default')} fits per model" + (f" ({', '.join(other)})" if other else "")


def undated_policy_text(policy: str) -> str:
    """What a policy does, in words."""
    return {
        "exclude_only": "undated rows never train a model and never reach validation or test; they only exclude a "
        "customer from "
        "being recommended a product they touched, for models and references alike",
        "train": "undated rows join the fit rows of both splits (an undated row may belong to a later period)",
        "drop": "undated rows are removed from everything",
    }[policy]


def family_text(comparisons: Sequence[Comparison]) -> str:
    """The family of comparisons in words."""
    if not comparisons:
        return "no comparison was possible"
    verdict = [c for c in comparisons if "verdict" in c.purpose]
    default = [c for c in comparisons if "default_ranker" in c.purpose]
    parts = []
    if verdict:
        parts.append(f"{verdict[0].a} vs {verdict[0].b} at k = {ks_text([c.k for c in verdict])} (verdict)")
    if default:
        c = default[0]
        parts.append(f"{c.a} vs {c.b} at k = {c.k} (test leader vs runner-up for the default ranker)")
    return "; ".join(parts)


def data_markdown(s: EvaluationSummary) -> str:
    """Who is there to be found: split sizes, unseen customers, reachable pairs, undated rows."""
    test = s.split("test")
    u = s.undated
    reach = test.reachable_pairs / test.relevant_pairs if test.relevant_pairs else float("nan")
    lines = [
        f"Test window: {test.truth_rows:,} rows by {test.truth_customers:,} customers, of whom "
        f"{pct(test.truth_customers_unseen_share)} "
        f"have no fit rows. {test.evaluated_products:,} products have both fit rows and test rows and are all "
        "evaluated "
        f"({test.evaluated_with_truth:,} with relevant customers); {test.new_products:,} products of the test window "
        "have no fit rows "
        "and are reported separately (each ranker's cold-start order).",
        f"Of their {test.relevant_pairs:,} relevant (product, customer) pairs, {test.reachable_pairs:,} "
        f"({pct(reach)}) involve a customer "
        "with fit rows who is not excluded for that product: no ranker that targets known customers can find the "
        "others. "
        f"{test.ranked_products:,} products have at least one such pair; every other product scores 0 for every model.",
        f"Undated rows: {u.undated_rows:,} rows by {u.undated_customers:,} customers, "
        f"{u.customers_known_only_undated:,} of whom have "
        f"no dated row at all; {u.known_only_undated_truth_customers:,} test-window customers are known before the "
        "cutoff only "
        f"through undated rows, and {u.excluded_truth_pairs:,} relevant test pairs are pairs an undated row already "
        "holds "
        f"(under `{u.policy}`: {undated_effect_text(u.policy)}).",
    ]
    if s.slice_shares:
        t = s.slice_shares.get("test_rows") or {}
        lines.append(
            f"Test rows by customers with 0 / 1 / 2+ fit rows: {pct(t.get('0'))} / {pct(t.get('1'))} / "
            f"{pct(t.get('2+'))}."
        )
    return "## Data\n\n" + "\n\n".join(lines) + "\n"


def undated_effect_text(policy: str) -> str:
    """The effect of the policy on those counts."""
    return {
        "exclude_only": "those customers cannot be recommended anything and those pairs are excluded",
        "train": "those customers are reachable and those pairs are never recommended",
        "drop": "those customers are unknown and those pairs are recommendable",
    }[policy]


def tuning_markdown(s: EvaluationSummary) -> str:
    """Chosen settings and the validation trials' objectives and hits."""
    p = s.protocol
    val = s.split("validation")
    lines = [
        "## Tuning on validation",
        "",
        f"Validation window: {val.evaluated_products:,} products ({val.ranked_products:,} with a reachable relevant "
        "customer). "
        f"Objective {p.objective_metric}@{p.objective_k}; validation hits are shown at k = {p.objective_k} and k = "
        f"{p.headline_k}.",
        "",
        f"| model | trials (fits) | chosen settings | validation {p.objective_metric}@{p.objective_k} | "
        f"hits@{p.objective_k} | hits@{p.headline_k} | best / worst trial hits@{p.objective_k} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in s.tuning:
        chosen = next(tr for tr in t.trials if tr.chosen)
        hits = [tr.hits_objective_k for tr in t.trials]
        settings = ", ".join(f"{k}={v}" for k, v in t.chosen.items()) or "fixed params"
        lines.append(
            f"| {t.model} | {len(t.trials)} ({t.fits}) | {settings} | {fmt(chosen.objective)} | "
            f"{chosen.hits_objective_k} | "
            f"{chosen.hits_headline_k} | {max(hits)} / {min(hits)} |"
        )
    few = [t.model for t in s.tuning if next(tr for tr in t.trials if tr.chosen).hits_objective_k < 10]
    if few:
        lines += ["", f"Chosen on fewer than 10 validation hits (the choice is close to arbitrary): {', '.join(few)}."]
    return "\n".join(lines) + "\n"


def results_markdown(s: EvaluationSummary) -> str:
    """The test table: precision@headline with interval and hits, precision@objective k (when it is another k),
    settings; then how close the best deployable model comes to the oracle ceiling."""
    k, k2 = s.protocol.headline_k, s.protocol.objective_k
    rnd, orc = s.reference("random_expected"), s.reference("oracle")
    second = k2 != k
    extra_head = f" precision@{k2} [interval] | hits@{k2} |" if second else ""
    lines = [
        "## Test results (scored once)",
        "",
        f"| model | group | precision@{k} [{s.protocol.level:.0%} interval] | hits@{k} | phi |{extra_head} settings |",
        "| --- | --- | --- | --- | --- |" + (" --- | --- |" if second else "") + " --- |",
    ]
    for m in sorted(s.models, key=lambda m: -(m.at(k).value or 0.0)):
        a, b = m.at(k), m.at(k2)
        settings = chosen_text(s, m.label)
        extra = f" {interval(b.value, b.low, b.high)} | {b.hits:g} |" if second else ""
        lines.append(
            f"| {m.label} | {m.group} | {interval(a.value, a.low, a.high)} | {a.hits:g} | {fmt(a.phi)} |{extra} "
            f"{settings} |"
        )
    rnd_extra = f" {fmt(rnd.at(k2).value)} | {fmt(rnd.at(k2).hits)} expected |" if second else ""
    orc_extra = f" {fmt(orc.at(k2).value)} | {orc.at(k2).hits:g} |" if second else ""
    lines.append(
        f"| random (exact expectation) | reference | {fmt(rnd.at(k).value)} | {fmt(rnd.at(k).hits)} expected | |"
        f"{rnd_extra} |"
    )
    lines.append(f"| oracle (ceiling) | reference | {fmt(orc.at(k).value)} | {orc.at(k).hits:g} | |{orc_extra} |")
    if s.skipped_models:
        lines += ["", "Skipped: " + "; ".join(f"{m} ({why})" for m, why in s.skipped_models.items()) + "."]
    ceiling = orc.at(k).value
    deployable = [m for m in s.models if m.group != "reference"]
    best = max(deployable, key=lambda m: m.at(k).value or 0.0, default=None)
    if best is not None and ceiling:
        share = pct((best.at(k).value or 0.0) / ceiling)
        text = f"The highest precision@{k} of a deployable model ({best.label}) is {share} of the oracle ceiling"
        refs = [m for m in s.models if m.group == "reference"]
        if refs:
            text += "; " + ", ".join(
                f"the {m.label} reference reaches {pct((m.at(k).value or 0.0) / ceiling)}" for m in refs
            )
        lines += ["", text + "."]
    return "\n".join(lines) + "\n"


def chosen_text(s: EvaluationSummary, label: str) -> str:
    """The chosen values of a model's searched keys ('k=v, ...'), or 'fixed' when it was not searched."""
    t = next((t for t in s.tuning if t.model == label), None)
    if t is None or not any(t.space):
        return "fixed"
    return ", ".join(f"{key}={value}" for key, value in t.chosen.items())


def comparisons_markdown(s: EvaluationSummary) -> str:
    """The family's comparisons with p, Holm-adjusted p, hits and power."""
    return "## Paired comparisons (Holm-corrected family)\n\n" + comparison_table(s.comparisons)


def comparison_table(comparisons: Sequence[Comparison]) -> str:
    """Paired comparisons as a table: hits, discordant hits and customers, difference, p, Holm p, power."""
    lines = [
        "| A vs B | k | hits A / B | discordant (customers) | A - B [interval] | p | Holm p | min. detectable ratio "
        "| powered | purpose |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        ratio = "not detectable" if c.mde_ratio is None else fmt(c.mde_ratio)
        lines.append(
            f"| {c.a} vs {c.b} | {c.k} | {c.hits_a} / {c.hits_b} | {c.discordant} ({c.discordant_customers}) | "
            f"{interval(c.difference, c.diff_low, c.diff_high)} | {fmt(c.p_value)} | {fmt(c.p_holm)} | {ratio} | "
            f"{'yes' if c.powered else 'no'} | {' + '.join(c.purpose)} |"
        )
    return "\n".join(lines) + "\n"


NAME_VERDICT_SHORT: dict[str, str] = {
    "name_better": "name better",
    "fallback_better": "fallback better",
    "no_detectable_difference": "no detectable difference",
    "inconclusive": "inconclusive",
}


def name_verdict_phrase(v: NameVerdict) -> str:
    """A new-products verdict with the discordant hits it rests on when it is not decided."""
    return verdict_phrase(v, NAME_VERDICT_SHORT)


def count_text(value: float | None) -> str:
    """A hit count: whole numbers with thousands separators, expected (fractional) counts to 3 significant digits."""
    if value is None:
        return "–"
    return f"{int(value):,}" if float(value).is_integer() else fmt(value)


def new_products_markdown(s: EvaluationSummary) -> str:
    """The new-products track: what was ranked from names, every model's precision with interval and hits at
    every k, the paired tests of the name models against the fallback (Holm) and the verdicts."""
    new = s.new_products
    if new is None:
        return ""
    test, k = s.split("test"), s.protocol.headline_k
    chosen = s.selection.new_products if s.selection is not None else None
    lines = [
        "## New products: ranked from their names",
        "",
        f"{test.new_products:,} products of the test window had no fit rows ({new.with_truth:,} with customers in the "
        f"window; {new.ranked:,} have a customer a ranker could return, the others score 0 for every ranker). "
        f"Catalogue: {new.catalogue}. Rankers that do not read names give their fallback order (column `basis`); "
        "the name models' settings were tuned on the validation window's new products.",
    ]
    if chosen is not None:
        lines += ["", f"Chosen on validation for new products: **{chosen.label}**."]
    if new.fallback is not None:
        lines += [
            f"The fallback to beat (the better engagement order on validation's new products): **{new.fallback}**."
        ]
    if not new.models:
        return "\n".join(lines) + "\n"
    ks = [p.k for p in new.models[0].precision]
    lines += [
        "",
        f"| model | basis | precision@{k} [{s.protocol.level:.0%} interval] | "
        + " | ".join(f"hits@{x}" for x in ks)
        + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in ks) + " |",
    ]
    for m in sorted(new.models, key=lambda m: -(m.at(k).value or 0.0)):
        a = m.at(k)
        basis = ", ".join(f"{b} {n:,}" for b, n in sorted(new.basis.get(m.label, {}).items()))
        hits = " | ".join(f"{m.at(x).hits:g}" for x in ks)
        label = f"{m.label} (reference)" if m.group == "reference" else m.label
        lines.append(f"| {label} | {basis} | {interval(a.value, a.low, a.high)} | {hits} |")
    for r in new.references:
        hits = " | ".join(count_text(r.at(x).hits) for x in ks)
        lines.append(f"| {r.label} (reference) | | {fmt(r.at(k).value)} | {hits} |")
    if new.comparisons:
        lines += ["", "Paired tests against the fallback (Holm-corrected within this family):", ""]
        lines.append(comparison_table(new.comparisons).rstrip("\n"))
    by_model: dict[str, list[NameVerdict]] = {}
    for v in new.verdicts:
        by_model.setdefault(v.model, []).append(v)
    if by_model:
        lines += ["", "Verdicts (name model vs fallback):", ""]
        for model, vs in by_model.items():
            parts = "; ".join(f"k={v.k} {name_verdict_phrase(v)}" for v in vs)
            lines.append(f"- {model} vs {vs[0].fallback}: {parts}")
    return "\n".join(lines) + "\n"


def new_products_brief_markdown(s: EvaluationSummary) -> str:
    """A compact new-products table: hits at every k of the fallback and of each name model with its verdict."""
    new = s.new_products
    if new is None or not new.models or new.fallback is None:
        return ""
    ks = [p.k for p in new.models[0].precision]
    chosen = s.selection.new_products.label if s.selection is not None and s.selection.new_products else None
    verdict = {(v.model, v.k): v for v in new.verdicts}
    names = [m for m in new.models if any(v.model == m.label for v in new.verdicts)]
    fallback = next((m for m in new.models if m.label == new.fallback), None)
    lines = [
        "| model | " + " | ".join(f"hits@{k}: verdict vs fallback" for k in ks) + " |",
        "| --- | " + " | ".join("---" for _ in ks) + " |",
    ]
    if fallback is not None:
        lines.append(f"| {fallback.label} (fallback) | " + " | ".join(f"{fallback.at(k).hits:g}" for k in ks) + " |")
    for m in names:
        cells = []
        for k in ks:
            v = verdict.get((m.label, k))
            text = "" if v is None else NAME_VERDICT_SHORT.get(v.verdict, v.verdict)
            if v is not None and v.verdict == "inconclusive":
                text += f", {v.discordant} discordant"
            cells.append(f"{m.at(k).hits:g}" + (f": {text}" if text else ""))
        label = f"**{m.label}** (chosen on validation)" if m.label == chosen else m.label
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdicts_markdown(s: EvaluationSummary) -> str:
    """Per-k verdicts and the overall sentence."""
    lines = ["## Verdicts", ""]
    for v in s.verdicts:
        lines.append(f"- k={v.k}: {v.cf_model} vs {v.engagement_model}: **{verdict_phrase(v)}**")
    lines += ["", f"**Overall:** {s.overall}"]
    return "\n".join(lines) + "\n"


def coverage_markdown(s: EvaluationSummary) -> str:
    """Whether the random ranker's interval covers its exact expectation on this data set."""
    if not s.random_coverage:
        return "## Random-ranker check\n\nNo random ranker was evaluated.\n"
    ok = [c.k for c in s.random_coverage if c.covers]
    bad = [c for c in s.random_coverage if not c.covers]
    text = (
        f"The seeded random ranker's precision interval covers the exact random expectation at k = {ks_text(ok)}."
        if ok
        else ""
    )
    if bad:
        text += (
            " It does not at "
            + ", ".join(f"k={c.k} (expected {fmt(c.expected)}, interval [{fmt(c.low)}, {fmt(c.high)}])" for c in bad)
            + "."
        )
    return "## Random-ranker check\n\n" + text.strip() + "\n"


def selection_sentence(s: EvaluationSummary) -> str:
    """How the served model was chosen on validation and what the test window says of it (no section heading)."""
    d = s.default_ranker
    if d is None:
        return "No deployable model was evaluated."
    sel = s.selection
    basis = ""
    if sel is not None:
        v = sel.products.validation
        basis = f" (validation {v.metric}@{v.k} {fmt(v.value)}, {v.hits} hits)"
    text = (
        f"Chosen on the validation window: **{d.label}** (ranker `{d.ranker}`){basis}. On the test window, scored "
        f"once, its precision@{d.k} is {interval(d.value, d.low, d.high)}"
    )
    text += (
        f"; it has the highest test precision at k = {ks_text(d.leads_at_k)}."
        if d.leads_at_k
        else ("; it does not have the highest test precision at any k.")
    )
    if d.runner_up is not None:
        if d.significant:
            text += (
                f" The test window confirms its lead over the validation runner-up {d.runner_up} "
                f"(Holm p = {fmt(d.p_holm)})."
            )
        elif d.reversed:
            text += (
                f" The test window reverses it: the validation runner-up {d.runner_up} is significantly better on test "
                f"(Holm p = {fmt(d.p_holm)})."
            )
        else:
            text += (
                f" The test window cannot tell it from the validation runner-up {d.runner_up} (Holm p = "
                f"{fmt(d.p_holm)})."
            )
    return text


def default_ranker_markdown(s: EvaluationSummary) -> str:
    """The served model (chosen on validation) and what the test window says of it."""
    return "## Default ranker\n\n" + selection_sentence(s) + "\n"


def case_study_markdown(s: EvaluationSummary) -> str:
    """The original write-up's figures next to the measured ones (only for a log in the case-study layout)."""
    if not s.case_study:
        return ""
    lines = [
        "## Comparison with the original write-up (case-study layout)",
        "",
        "The original write-up's figures were not produced by this protocol; they are listed for reference only.",
        "",
        "| figure | original write-up | this evaluation |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {r.claim} | {r.claimed} | {r.measured} |" for r in s.case_study]
    return "\n".join(lines) + "\n"


def report_markdown(s: EvaluationSummary) -> str:
    """The whole generated evaluation report (protocol first)."""
    sections = [
        "# Evaluation report (generated from the evaluation's results)\n",
        protocol_markdown(s),
        data_markdown(s),
        tuning_markdown(s),
        results_markdown(s),
        new_products_markdown(s),
        comparisons_markdown(s),
        verdicts_markdown(s),
        coverage_markdown(s),
        default_ranker_markdown(s),
        case_study_markdown(s),
    ]
    return "\n".join(x for x in sections if x).rstrip() + "\n"
