"""Generated text from a hand-made typed summary: the summary table, the default-ranker sentence, verdict prose."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from recsys.cache.checks import CacheChecks
from recsys.cache.manifest import AllocationInfo, AllocationStats, MeasuredPrecision, ServedFigures
from recsys.evaluation import report
from recsys.evaluation.results import (
    Comparison,
    Coverage,
    DefaultChoice,
    EvaluationSummary,
    KVerdict,
    ModelResult,
    PrecisionAtK,
    Protocol,
    Reference,
    SplitFacts,
    Trial,
    Tuning,
    UndatedFacts,
    read_summary,
    write_summary,
)
from recsys.reporting import findings
from recsys.reporting.summary import summary_markdown


def prec(k: int, value: float, hits: float, low: float | None = None, high: float | None = None) -> PrecisionAtK:
    """A precision record (interval = value / 2 .. value * 2 unless given)."""
    return PrecisionAtK(
        k=k,
        value=value,
        low=value / 2 if low is None else low,
        high=value * 2 if high is None else high,
        hits=hits,
        phi=1.0,
        boot_low=None,
        boot_high=None,
    )


def split(name: str) -> SplitFacts:
    """Split facts with round numbers."""
    return SplitFacts(
        name=name,
        cutoff="2023-03-14T20:21:04+00:00",
        end=None,
        window_days=17.2,
        fit_rows=1000,
        truth_rows=200,
        exclude_rows=10,
        fit_customers=500,
        truth_customers=150,
        truth_customers_unseen=120,
        truth_customers_unseen_share=0.8,
        truth_products=90,
        truth_products_unseen=40,
        evaluated_products=50,
        evaluated_with_truth=50,
        ranked_products=12,
        new_products=40,
        relevant_pairs=100,
        reachable_pairs=20,
        truth_dispersion=1.2,
    )


def summary(
    significant: bool = True, verdicts: tuple[str, ...] = ("inconclusive", "inconclusive")
) -> EvaluationSummary:
    """A small summary: content leads, als vs activity is the verdict pair at k = 10 and 100."""
    models = [
        ModelResult(
            label="content",
            ranker="content",
            group="content",
            tuned=True,
            params={"affinity_weight": 0.5},
            validation_objective=3e-5,
            precision=[prec(10, 0.004, 2), prec(100, 0.001, 5)],
        ),
        ModelResult(
            label="activity",
            ranker="activity",
            group="engagement",
            tuned=True,
            params={"engagement.normalisation": "minmax"},
            validation_objective=1e-5,
            precision=[prec(10, 0.002, 1), prec(100, 0.0006, 3)],
        ),
        ModelResult(
            label="als",
            ranker="als",
            group="cf",
            tuned=True,
            params={"factors": 32, "iterations": 10},
            validation_objective=8e-6,
            precision=[prec(10, 0.0, 0, 0.0, 0.0074), prec(100, 0.0004, 2)],
        ),
        ModelResult(
            label="random",
            ranker="random",
            group="baseline",
            tuned=False,
            params={},
            validation_objective=None,
            precision=[prec(10, 0.0, 0, 0.0, 0.0074), prec(100, 0.0, 0, 0.0, 0.00074)],
        ),
    ]
    refs = [
        Reference(label="random_expected", precision=[prec(10, 1e-4, 0.05, None, None), prec(100, 1e-4, 0.5)]),
        Reference(label="oracle", precision=[prec(10, 0.04, 20), prec(100, 0.004, 20)]),
    ]
    comps = [
        Comparison(
            a="als",
            b="activity",
            k=k,
            purpose=["verdict"],
            hits_a=0,
            hits_b=1,
            discordant=1,
            discordant_customers=1,
            overdispersion=1.0,
            statistic=-1,
            difference=-0.002,
            diff_low=-0.006,
            diff_high=0.0,
            p_value=1.0,
            p_method="exact",
            p_holm=1.0,
            significant=False,
            mde_ratio=None,
            mde_precision=None,
            powered=False,
        )
        for k in (10, 100)
    ] + [
        Comparison(
            a="content",
            b="activity",
            k=10,
            purpose=["default_ranker"],
            hits_a=2,
            hits_b=1,
            discordant=3,
            discordant_customers=3,
            overdispersion=1.0,
            statistic=1,
            difference=0.002,
            diff_low=-0.002,
            diff_high=0.006,
            p_value=0.01 if significant else 0.6,
            p_method="exact",
            p_holm=0.03 if significant else 1.0,
            significant=significant,
            mde_ratio=None,
            mde_precision=None,
            powered=False,
        )
    ]
    kv = [
        KVerdict(k=k, verdict=v, cf_model="als", engagement_model="activity", discordant=h, discordant_customers=h)
        for k, v, h in zip((10, 100), verdicts, (1, 5), strict=True)
    ]
    return EvaluationSummary(
        protocol=Protocol(
            test_quantile=0.8,
            validation="matched",
            undated_policy="exclude_only",
            truth_events=None,
            ks=[10, 100],
            headline_k=10,
            objective_metric="precision",
            objective_k=100,
            tuning_budget={"default": 4},
            tuning_seed=42,
            seed=42,
            level=0.95,
            n_boot=100,
            alpha=0.05,
            power=0.8,
            smallest_effect_ratio=1.5,
            cf_models=["als"],
            engagement_models=["activity"],
        ),
        splits=[split("validation"), split("test")],
        undated=UndatedFacts(
            policy="exclude_only",
            undated_rows=10,
            undated_customers=9,
            customers_known_only_undated=5,
            known_only_undated_truth_customers=2,
            excluded_truth_pairs=1,
        ),
        models=models,
        references=refs,
        tuning=[
            Tuning(
                model="als",
                space=[{"factors": [16, 32]}],
                grid_size=2,
                fits=2,
                trials=[
                    Trial(
                        index=0,
                        params={"factors": 16},
                        objective=5e-6,
                        hits_objective_k=2,
                        hits_headline_k=0,
                        chosen=False,
                    ),
                    Trial(
                        index=1,
                        params={"factors": 32},
                        objective=8e-6,
                        hits_objective_k=3,
                        hits_headline_k=1,
                        chosen=True,
                    ),
                ],
                chosen={"factors": 32},
            )
        ],
        comparisons=comps,
        verdicts=kv,
        overall=report.overall_sentence(kv),
        random_coverage=[
            Coverage(k=10, expected=1e-4, low=0.0, high=0.0074, covers=True),
            Coverage(k=100, expected=1e-4, low=0.0, high=0.00074, covers=True),
        ],
        default_ranker=DefaultChoice(
            k=10,
            label="content",
            ranker="content",
            value=0.004,
            low=0.002,
            high=0.008,
            leads_at_k=[10, 100],
            runner_up="activity",
            p_holm=0.03 if significant else 1.0,
            significant=significant,
        ),
        skipped_models={},
        slice_shares={"test_rows": {"0": 0.8, "1": 0.15, "2+": 0.05}},
        case_study=None,
    )


EXPLORE = {
    "rows": 1000,
    "users": 800,
    "products": 300,
    "source": "synthetic",
    "scale": 0.01,
    "one_time_users_pct": 89.0,
    "retention_pct": 3.0,
    "new_products_pct": 57.0,
    "split_cutoff": "2023-03-14T20:21:04+00:00",
}


def cache_checks(ranker: str = "activity", served: ServedFigures | None = None, cap: int | None = None) -> CacheChecks:
    """The cache stage's checks with only what the summary reads (model_construct: no other field is needed)."""
    fields: dict[str, Any] = {
        "dataset": "synthetic",
        "ranker": ranker,
        "n": 100,
        "candidate_depth": 300,
        "products": 300,
        "exclusion_violations": 0,
        "allocation": AllocationInfo(
            max_exposures=cap, min_audience=0, depth=100, seed=0, stats=AllocationStats(capped=cap is not None)
        ),
        "served": served
        or ServedFigures(
            status="measured",
            what="test-window precision of activity",
            source="reports/datasets/synthetic/evaluation/summary.json",
            model="activity",
            precision=[MeasuredPrecision(k=100, value=0.002, low=0.001, high=0.004, hits=60)],
        ),
    }
    return CacheChecks.model_construct(**fields)


CACHE = cache_checks()


def test_summary_table_lists_every_model_with_interval_hits_and_settings() -> None:
    text = summary_markdown(summary(), EXPLORE, CACHE)
    assert "| content | content | 0.004 [0.002, 0.008] | 2 | fixed |" in text  # no search record: fixed in params
    assert "| als | cf | 0 [0, 0.0074] | 0 | factors=32 |" in text
    assert "| random (exact expectation) | reference | 0.0001 | 0.05 expected | |" in text
    assert "k=10 inconclusive (1 discordant hits); k=100 inconclusive (5 discordant hits)" in text
    assert "**the evaluation recommends `content`**" in text
    assert "random ranker's interval covers its exact expectation at every k" in text
    agreeing = summary_markdown(summary(), EXPLORE, cache_checks("content"))
    assert "this is the ranker the evaluation recommends" in agreeing
    assert "Measured precision of the served configuration: precision@100 0.002 [0.001, 0.004] (60 hits)" in text
    capped = summary_markdown(
        summary(),
        EXPLORE,
        cache_checks(
            cap=50,
            served=ServedFigures(status="not_measured", what="activity under cap 50", reason="no study measures it"),
        ),
    )
    assert "capped catalogue-wide at 50" in capped and "**not measured** (no study measures it)" in capped
    assert "Measured precision" not in capped  # never another configuration's figures under "served"


def test_default_ranker_says_what_the_test_window_says_of_the_validation_choice() -> None:
    confirmed = report.default_ranker_markdown(summary(significant=True))
    assert "Chosen on the validation window" in confirmed
    assert "confirms its lead over the validation runner-up activity (Holm p = 0.03)" in confirmed
    text = report.default_ranker_markdown(summary(significant=False))
    assert "cannot tell it from the validation runner-up activity (Holm p = 1)" in text


def test_prose_follows_the_verdict_data() -> None:
    s = summary(verdicts=("cf_better", "no_detectable_difference"))
    assert "CF better at k=10; no detectable difference at k=100" in s.overall
    assert "- k=10: als vs activity: **CF better**" in report.verdicts_markdown(s)
    assert "because" not in report.report_markdown(s)  # no causal claim is ever generated
    assert report.report_markdown(s).index("## Protocol") < report.report_markdown(s).index("## Data")


def test_summary_round_trips_through_json(tmp_path: Path) -> None:
    s = summary()
    path = write_summary(s, tmp_path / "summary.json")
    assert read_summary(path) == s
    with pytest.raises(FileNotFoundError, match="recsys evaluate"):
        read_summary(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------- findings


def headline_at(s: EvaluationSummary, k: int) -> EvaluationSummary:
    """The same results with another headline depth and no recommended default (the lead is then the best at k)."""
    return s.model_copy(update={"protocol": s.protocol.model_copy(update={"headline_k": k}), "default_ranker": None})


def test_findings_are_three_to_five_sentences_built_from_the_results() -> None:
    s = summary()
    sentences = findings.finding_sentences(s)
    assert 3 <= len(sentences) <= 5
    lead = findings.lead_sentence(s)
    assert lead.startswith(
        "content (name-content ranking), chosen on the validation window to serve, scores precision@10 0.004 "
        "[0.002, 0.008] (2 hits, 40× random targeting, 10.0% of the oracle ceiling)"  # 0.004 / 1e-4 and 0.004 / 0.04
    )
    assert "confirms its lead over the validation runner-up activity (Holm p = 0.03)" in lead
    assert "cannot tell it from the validation runner-up activity" in findings.lead_sentence(summary(significant=False))
    assert findings.depth_sentence(s) == "It has the highest test precision at every depth evaluated (k = 10 and 100)."
    assert "inconclusive at every depth (1-5 discordant hits per comparison)" in findings.cf_sentence(s)
    mixed = findings.cf_sentence(summary(verdicts=("cf_better", "no_detectable_difference")))
    assert "CF better at k = 10 (collaborative filtering finds significantly more customers)" in mixed
    assert "no detectable difference at k = 100" in mixed
    assert (
        "44.4% of the products customers engaged with in the test window (40 of 90)"
        in findings.new_products_sentence(s)
    )
    text = findings.findings_markdown("tiny", s, link="datasets/tiny/evaluate.html")
    assert text.startswith("**[`tiny`](datasets/tiny/evaluate.html).** content (name-content ranking)")


def test_a_reference_row_is_never_named_the_leader() -> None:
    s = summary()
    best = s.models[0]
    truth = best.model_copy(
        update={
            "label": "truth",
            "group": "reference",
            "precision": [p.model_copy(update={"value": (p.value or 0.0) * 10}) for p in best.precision],
        }
    )
    with_truth = s.model_copy(update={"models": [*s.models, truth]})
    assert "truth" not in findings.depth_sentence(with_truth)
    assert findings.depth_sentence(with_truth) == findings.depth_sentence(s)
    assert all(m.label != "truth" for m in findings.leaders(with_truth).values())
    best = s.models[0]
    rival = s.models[1].model_copy(
        update={"precision": [p.model_copy(update={"value": (p.value or 0.0) + 1.0}) for p in s.models[1].precision]}
    )
    text = findings.depth_sentence(s.model_copy(update={"models": [best, rival, *s.models[2:]]}))
    assert (
        text == "It has the highest test precision at no depth; elsewhere the point estimates put "
        f"{rival.label} first at k = 10 and 100."
    )


def test_results_table_shows_each_depth_once_and_the_best_deployable_model() -> None:
    s = summary()
    same = s.model_copy(update={"protocol": s.protocol.model_copy(update={"objective_k": s.protocol.headline_k})})
    header = next(line for line in report.results_markdown(same).splitlines() if line.startswith("| model"))
    k = s.protocol.headline_k
    assert header.count(f"precision@{k}") == 1 and header.count(f"hits@{k}") == 1
    best = s.models[0]
    truth = best.model_copy(
        update={
            "label": "truth",
            "group": "reference",
            "precision": [p.model_copy(update={"value": (p.value or 0.0) * 10}) for p in best.precision],
        }
    )
    text = report.results_markdown(s.model_copy(update={"models": [*s.models, truth]}))
    assert "of a deployable model (truth)" not in text
    assert "the truth reference reaches" in text


def test_findings_follow_the_headline_depth_of_the_results() -> None:
    s = headline_at(summary(), 100)
    assert (
        "**The answer at k = 100.** content (name-content ranking) has the highest test precision at k = 100: "
        "precision@100 0.001" in findings.answer_markdown(s)
    )
    assert "the headline depth is k = 100" in findings.question_markdown(s, "tiny")
    lines = findings.verdicts_brief_markdown(s).splitlines()
    assert [x for x in lines if x.startswith("- ")] == [
        "- k = 10: **inconclusive (1 discordant hits)**",
        "- k = 100: **inconclusive (5 discordant hits)**",
    ]


def test_summary_opens_with_the_findings_and_rewrites_the_readme_between_its_markers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from recsys.reporting import summary as summary_module
    from recsys.reporting.summary import FINDINGS_END, FINDINGS_START, findings_block
    from recsys.reporting.summary import write_summary as write_reports_summary

    checks = CACHE.model_copy(update={"dataset": "tiny"})  # the fields the summary reads (a partial record)
    monkeypatch.setattr(summary_module, "read_checks", lambda path: checks)

    reports = tmp_path / "reports"
    for name in ("tiny", "other"):
        write_summary(summary(), reports / "datasets" / name / "evaluation" / "summary.json")
        (reports / "datasets" / name / "metrics").mkdir(parents=True)
        (reports / "datasets" / name / "metrics" / "explore.json").write_text(json.dumps(EXPLORE))
    (reports / "metrics").mkdir()
    (reports / "metrics" / "cache.json").write_text("{}")  # read through the patched read_checks
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nHand-written text.\n\n", "\n\n## Next\n\nMore text.\n"
    readme.write_text(f"{before}{FINDINGS_START}\n\nold findings 123\n\n{FINDINGS_END}{after}")
    out = write_reports_summary(reports, ["tiny", "other"], "tiny", readme=readme)
    text = out.read_text()
    assert text.index("## What we found") < text.index("## Every data set")
    block = findings_block(reports, ["tiny", "other"], "tiny", "reports/")
    assert block.startswith("**[`tiny`](reports/datasets/tiny/evaluate.html) (served).**")
    assert "**[`other`](reports/datasets/other/evaluate.html).**" in block
    assert readme.read_text() == f"{before}{FINDINGS_START}\n\n{block}\n\n{FINDINGS_END}{after}"
    assert findings_block(reports, ["tiny", "other"], "tiny") in text  # the same sentences, linked from reports/
    bare = tmp_path / "BARE.md"
    bare.write_text("no markers\n")
    write_reports_summary(reports, ["tiny"], "tiny", readme=bare)
    assert bare.read_text() == "no markers\n"


def test_readme_params_table_is_the_one_dvc_yaml_gives() -> None:
    from recsys import config
    from recsys.reporting.readme import read_block
    from recsys.reporting.stages import END, START, params_markdown, params_reruns

    rows = params_reruns()
    evaluate = next(r for r in rows if (r.file, r.key) == ("params/evaluate.yaml", "evaluate"))
    assert "evaluate@synthetic" in evaluate.stages and "evaluate_report@synthetic" in evaluate.downstream
    assert read_block(config.PROJ_ROOT / "README.md", START, END) == params_markdown(rows), (
        "README's params table is stale: run `.venv/bin/python -m recsys.reporting.stages`"
    )


# ---------------------------------------------------------------------------------------------- rendered reports


def test_broken_links_finds_missing_files_and_anchors(tmp_path: Path) -> None:
    from recsys.reporting.links import broken_links, broken_report_links, markdown_broken_links

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "other.html").write_text("<h2 id='There'>x</h2><a name='named'></a>")
    (tmp_path / "data.csv").write_text("a\n")
    page = tmp_path / "page.html"
    page.write_text(
        "<h1 id='Users:-89.0%25-act-once'>t</h1><a href='#Users:-89.0%25-act-once'>ok</a>"
        "<a href='data.csv'>ok</a><a href='sub/other.html#There'>ok</a><a href='sub/other.html#named'>ok</a>"
        "<img src='data:image/png;base64,AAAA'><script src='https://example.invalid/x.js'></script>"
        "<a href='#nowhere'>bad</a><a href='missing.ipynb'>bad</a><a href='sub/other.html#Gone'>bad</a>"
    )
    assert broken_links(page) == [
        "#nowhere: no element with that id on the page",
        "missing.ipynb: no such file",
        "sub/other.html#Gone: no element with that id in other.html",
    ]
    assert list(broken_report_links(tmp_path)) == ["page.html"]
    md = tmp_path / "notes.md"
    md.write_text("[ok](data.csv) ![img](sub/other.html) [bad](nope.md) [anchor](page.html#nowhere)\n")
    assert markdown_broken_links(md) == [
        "nope.md: no such file",
        "page.html#nowhere: no element with that id in page.html",
    ]


def test_rendered_report_hides_code_names_itself_and_links_its_sources(tmp_path: Path) -> None:
    import nbformat

    from recsys import config
    from recsys.reporting.links import broken_links
    from recsys.reporting.notebooks import render_html

    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("secret_code_marker = 1\nprint('shown output')")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="shown output\n")]
    silent = nbformat.v4.new_code_cell("import_only_marker = 2")
    nb.cells = [nbformat.v4.new_markdown_cell("# Heading\n\n[to the heading](#Heading)"), code, silent]
    executed = tmp_path / "reports" / "datasets" / "tiny" / "evaluate.ipynb"
    executed.parent.mkdir(parents=True)
    nbformat.write(nb, executed)
    html = render_html(executed, "evaluate", "tiny").read_text()
    assert "<title>Evaluation of the rankers · data set tiny</title>" in html
    assert "shown output" in html and "secret_code_marker" not in html and "import_only_marker" not in html
    assert "overflow-x: auto" in html  # wide outputs scroll inside their frame
    source = os.path.relpath(config.NOTEBOOKS_DIR / "evaluate.ipynb", executed.parent)
    assert 'href="evaluate.ipynb"' in html and f'href="{Path(source).as_posix()}"' in html
    assert "<code>notebooks/evaluate.ipynb</code>" in html and "dvc repro evaluate_report@tiny" in html
    assert broken_links(executed.with_suffix(".html")) == []  # the heading anchor, both notebooks


def test_committed_reports_have_no_broken_link() -> None:
    from recsys import config
    from recsys.reporting.links import broken_report_links, markdown_broken_links

    pages = list(config.REPORTS_DIR.rglob("*.html"))
    if not pages:
        pytest.skip("no rendered report under reports/: run `make run` first")
    assert broken_report_links(config.REPORTS_DIR) == {}
    for md in (config.REPORTS_DIR / "summary.md", config.PROJ_ROOT / "README.md"):
        assert markdown_broken_links(md) == [], md


def test_new_products_sentence_reads_the_new_products_track() -> None:
    from recsys.evaluation.results import NameVerdict, NewProductsResult, SelectedModel, Selection, ValidationScore

    s = summary()
    content, activity = s.model("content"), s.model("activity")
    score = ValidationScore(label="content", ranker="content", metric="precision", k=10, value=0.01, hits=3)
    chosen = SelectedModel(label="content", ranker="content", settings={}, validation=score)
    track = NewProductsResult(
        catalogue="first name seen",
        products=40,
        with_truth=40,
        ranked=12,
        models=[content, activity],
        references=s.references,
        tuning=[],
        validation=[score],
        basis={},
        fallback="activity",
        comparisons=[],
        verdicts=[
            NameVerdict(k=10, model="content", fallback="activity", verdict="name_better", discordant=4,
                        discordant_customers=4),
        ],
    )  # fmt: skip
    selection = Selection(
        dataset="tiny", rule="best validation", headline_k=10, products=chosen, runner_up=None, new_products=chosen,
        new_products_runner_up=None,
    )  # fmt: skip
    text = findings.new_products_sentence(s.model_copy(update={"new_products": track, "selection": selection}))
    assert text.startswith("44.4% of the products customers engaged with in the test window (40 of 90)")
    assert "content (chosen on validation for new products) scores precision@10 0.004 [0.002, 0.008] (2 hits)" in text
    assert "against 0.002 for the activity fallback (the name finds significantly more of their customers)." in text
    assert findings.new_products_sentence(s).endswith("scored separately (evaluate report).")


def test_scrub_gives_styled_tables_stable_ids(tmp_path: Path) -> None:
    import nbformat
    import pandas as pd

    from recsys.reporting.notebooks import scrub

    def executed(path: Path) -> Path:
        """A notebook whose two outputs are pandas-styled tables (a random uuid each time they are rendered)."""
        frame = pd.DataFrame({"a": [1.0, 2.0]})
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("t") for _ in range(2)]
        for cell in nb.cells:
            html = frame.style.format("{:.3g}").to_html()
            plain = repr(frame.style)  # "<pandas.io.formats.style.Styler at 0x...>"
            cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": html, "text/plain": plain})]
        nbformat.write(nb, path)
        return path

    first, second = executed(tmp_path / "a.ipynb"), executed(tmp_path / "b.ipynb")
    assert first.read_bytes() != second.read_bytes()  # pandas draws a new table id per rendering
    scrub(first)
    scrub(second)
    assert first.read_bytes() == second.read_bytes()
    html = [c.outputs[0]["data"]["text/html"] for c in nbformat.read(first, as_version=4).cells]
    assert "T_t01" in html[0] and "T_t02" in html[1] and "T_t01" not in html[1]  # each table keeps its own id
    plain = nbformat.read(first, as_version=4).cells[0].outputs[0]["data"]["text/plain"]
    assert plain.startswith("<pandas.io.formats.style.Styler") and " at 0x" not in plain
