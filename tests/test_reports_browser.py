"""The evaluate reports as a reviewer opens them: Debian chromium (Playwright) at 1400 x 900, no scrolling.

For every data set with a rendered evaluate report under reports/ (after `make run`): the browser tab's title names
the report and the data set, and the first screen shows the answer at the headline depth, every per-k verdict and
the overall sentence, all read from the data set's typed summary (never from the page's own text).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import ViewportSize, sync_playwright

from recsys import config
from recsys.evaluation.report import verdict_phrase
from recsys.evaluation.results import read_summary

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}


def reports() -> list[str]:
    """Data sets with a rendered evaluate report and its summary."""
    names = []
    for name in config.datasets():
        paths = config.dataset_paths(name)
        if (paths.reports_dir / "evaluate.html").is_file() and paths.evaluation_summary.is_file():
            names.append(name)
    return names


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium; skipped with a reason outside CI when missing, a failure in CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: run scripts/ensure_deb.sh /usr/bin/chromium chromium first")
        pytest.skip(f"{CHROMIUM} is not installed (scripts/ensure_deb.sh /usr/bin/chromium chromium)")
    return CHROMIUM


def test_there_are_reports_to_open() -> None:
    if not reports():
        pytest.skip("no rendered evaluate report under reports/datasets/: run `make run` first")
    assert set(reports()) <= set(config.datasets())


@pytest.mark.parametrize("dataset", reports() or [pytest.param("none", marks=pytest.mark.skip("no reports yet"))])
def test_first_screen_of_the_evaluate_report_shows_the_verdicts(chromium: Path, dataset: str) -> None:
    paths = config.dataset_paths(dataset)
    summary = read_summary(paths.evaluation_summary)
    k = summary.protocol.headline_k
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=["--headless", "--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto((paths.reports_dir / "evaluate.html").as_uri())
            title = page.title()
            assert "Evaluation" in title and dataset in title, title

            def on_first_screen(text: str) -> None:
                """The first element showing `text` is fully inside the 1400 x 900 viewport."""
                box = page.get_by_text(text, exact=False).first.bounding_box()
                assert box is not None, f"{text!r} is not on the page"
                assert box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"], (text, box)

            on_first_screen(f"The answer at k = {k}.")
            for v in summary.verdicts:
                on_first_screen(f"k = {v.k}: {verdict_phrase(v)}")
            on_first_screen(summary.overall)
            assert page.locator(".jp-CodeCell .jp-InputArea").count() == 0  # no code on the page
        finally:
            browser.close()
