"""The dashboard in a real browser: Voilà serves dashboard/app.ipynb on 127.0.0.1, driven by Debian chromium through
Playwright's sync API (never a downloaded browser).

- Over tiny artifacts (a hand-made typed evaluation summary, no explore metrics): the evaluation panel's lift chart,
  verdicts and overall sentence; search a product, see N rows with each customer's served exposure count, move a
  weight slider, see the ranking change, download the CSV and check it, then change the frequency cap and see who
  entered or left; search "perfume" and find the products named عطر with the true match count; a search that finds
  nothing clears the card; saves test-artifacts/dashboard.png.
- Over the default artifacts of `make run` (data/ and the served data set's reports), when they exist: the page as it
  opens, once
  fully rendered, is checked and saved to test-artifacts/readme-dashboard.png; `make screenshot`
  (RECSYS_UPDATE_SCREENSHOT=1) writes it to the README screenshot reports/figures/dashboard.png instead (skipped,
  saying so, without the artifacts).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from test_reporting import summary as hand_made_summary  # a small typed EvaluationSummary built by hand

from dashboard import campaigns as campaign_tab
from dashboard.artifacts import DashboardData
from dashboard.exposure import UNCAPPED
from dashboard.search import resolve_query
from dashboard.serve import voila_command
from dashboard.settings import DATA_ENV, REPORTS_ENV, DashboardPaths
from dashboard.whatif import WhatIfSettings
from recsys import config
from recsys.evaluation.results import write_summary
from recsys.exports import read_csv
from service.processes import free_port, port_open, stop_process_tree, wait_until

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEADLINE_S = 180.0  # generous bound for a loaded machine; never asserted as a timing
N_ROWS = 7
SCREENSHOT = config.PROJ_ROOT / "test-artifacts" / "dashboard.png"
README_SCREENSHOT = config.REPORTS_DIR / "figures" / "dashboard.png"
UPDATE_ENV = "RECSYS_UPDATE_SCREENSHOT"  # `make screenshot` sets it: only then is the committed README image rewritten


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium; skipped with a reason outside CI when missing, a failure in CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(
                f"{CHROMIUM} is missing in CI: the test target must run "
                "scripts/ensure_deb.sh /usr/bin/chromium chromium fonts-dejavu-core first"
            )
        pytest.skip(
            f"{CHROMIUM} is not installed (run scripts/ensure_deb.sh /usr/bin/chromium chromium fonts-dejavu-core); "
            "browser test skipped outside CI"
        )
    return CHROMIUM


@dataclass(frozen=True)
class Served:
    """A running dashboard and the artifacts it reads."""

    url: str
    paths: DashboardPaths


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> DashboardPaths:
    """Tiny generated log -> prepare -> cache (the real pipeline functions), laid out like data/; a hand-made
    evaluation summary where the served data set's belongs; no explore metrics."""
    from recsys.cache.stage import build_cache_from_params
    from recsys.data.contract import source_spec_from_params
    from recsys.data.prepare import prepare
    from recsys.data.synthetic import generate

    root = tmp_path_factory.mktemp("dashboard")
    paths = DashboardPaths.from_env({DATA_ENV: str(root / "data"), REPORTS_ENV: str(root / "reports")})
    raw = root / "data" / "raw" / "synthetic.csv"
    generate(raw, scale=0.01, seed=42)
    source = config.dataset_config(config.DEFAULT_DATASET)["source"]
    prepare(raw, paths.prepared, source_spec_from_params(source))
    build_cache_from_params(
        prepared_path=paths.prepared, cache_dir=paths.cache_dir, overrides={"ranker": "content", "new_products": "same"}
    )
    write_summary(hand_made_summary(), paths.evaluation_summary)
    return paths


@contextlib.contextmanager
def voila(env: dict[str, str], log: Path) -> Iterator[str]:
    """`python -m voila dashboard/app.ipynb` on a free 127.0.0.1 port with `env`; its URL, stopped afterwards."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            voila_command(port),
            cwd=config.PROJ_ROOT,
            env={**env, "OPENBLAS_NUM_THREADS": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: port_open(port),
            f"voila to listen on port {port}",
            timeout_s=DEADLINE_S,
            proc=proc,
            interval_s=0.1,
            describe_exit=lambda: log.read_text(errors="replace"),
        )
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop_process_tree(proc)


@contextlib.contextmanager
def browser_page(chromium: Path) -> Iterator[Page]:
    """A fresh page of headless Debian chromium (1500 x 1300, downloads accepted)."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300}, accept_downloads=True)
            page.set_default_timeout(DEADLINE_S * 1000)
            yield page
        finally:
            browser.close()


def reports_root(paths: DashboardPaths) -> Path:
    """The reports directory the paths were derived from (the summary sits at its data set's relative place)."""
    rel = config.dataset_paths(paths.dataset).evaluation_summary.relative_to(config.REPORTS_DIR)
    return paths.evaluation_summary.parents[len(rel.parts) - 1]


@pytest.fixture(scope="module")
def served(chromium: Path, artifacts: DashboardPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The dashboard pointed at the tiny artifacts."""
    env = {
        **os.environ,
        DATA_ENV: str(artifacts.cache_dir.parents[1]),  # <data>/artifacts/cache
        REPORTS_ENV: str(reports_root(artifacts)),
    }
    with voila(env, tmp_path_factory.mktemp("voila") / "voila.log") as url:
        yield Served(url, artifacts)


def wait_rendered(page: Page, rows: int) -> None:
    """Wait until the opening page is complete: product card, `rows` audience rows, summary, metrics panel, fonts."""
    expect(page.locator(".recsys-product-card h3")).to_be_visible()
    expect(page.locator(".recsys-audience tr.recsys-row")).to_have_count(rows)
    expect(page.locator(".recsys-summary-box .recsys-summary")).to_be_visible()  # each refresh writes it last
    expect(page.locator(".recsys-why")).to_be_visible()
    page.evaluate("document.fonts.ready.then(() => true)")
    page.wait_for_timeout(500)  # let the widgets finish their layout before the pixels are taken


def table_customers(page: Page) -> list[str]:
    """Customer ids shown in the audience table, in rank order."""
    return page.locator(".recsys-audience tr.recsys-row td.cust").all_inner_texts()


def set_slider(page: Page, css_class: str, value: str) -> None:
    """Type a value into an ipywidgets slider's editable readout and press Enter."""
    readout = page.locator(f".{css_class} .widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


def pick_query(data: DashboardData) -> tuple[str, object]:
    """A partial Arabic name query (alef/diacritics-insensitive) and the product the dashboard must open for it."""
    idx = data.products
    assert idx is not None
    order = np.argsort(-idx.interactions, kind="stable")
    for code in order[1:]:
        name = idx.names[code]
        if name and any("\u0600" <= ch <= "\u06ff" for ch in name.split()[0]) and len(name.split()) >= 3:
            query = " ".join(name.split()[:2]).replace("أ", "ا")
            first = resolve_query(idx, query).matches["product_id"].iloc[0]
            return query, first
    pytest.fail("no product with an Arabic name in the tiny log")


def pick_weight_change(data: DashboardData, pid: object, cached: np.ndarray) -> tuple[str, float, WhatIfSettings]:
    """One engagement-weight slider move that changes this product's top-N (computed with the pure functions)."""
    base = data.default_settings()
    for feature, value in (
        ("recency", 1.0),
        ("total_interactions", 0.0),
        ("interaction_frequency", 1.0),
        ("avg_event_score", 1.0),
    ):
        settings = replace(base, weights={**base.weights, feature: value})
        if not np.array_equal(data.audience(pid, N_ROWS, settings).customers, cached):
            return feature, value, settings
    pytest.fail("no single weight change alters the top-N of the chosen product")


def test_dashboard_in_chromium(chromium: Path, served: Served) -> None:
    data = DashboardData.load(served.paths)
    assert data.ready, data.issues
    query, pid = pick_query(data)
    cached = data.audience(pid, N_ROWS).customers
    feature, value, settings = pick_weight_change(data, pid, cached)
    expected = data.audience(pid, N_ROWS, settings)
    tight = data.audience(pid, N_ROWS, settings, cap=1)  # the frequency-cap what-if on top of the weight change
    free = data.audience(pid, N_ROWS, settings, cap=UNCAPPED)
    assert tight.held_out is not None and len(tight.held_out) > 0 and tight.diff is not None and free.diff is not None
    summary = hand_made_summary()
    idx = data.products

    with browser_page(chromium) as page:
        page.goto(served.url, timeout=DEADLINE_S * 1000)
        expect(page.locator(".recsys-audience tr.recsys-row").first).to_be_visible()

        # the evaluation panel reads the typed summary: lift chart on a log axis, per-k verdicts, overall sentence
        why = page.locator(".recsys-why")
        expect(why.locator("svg.recsys-lift-chart")).to_be_visible()
        expect(why.locator("svg.recsys-lift-chart circle.recsys-lift")).to_have_count(len(summary.models) + 1)
        expect(why.locator(".recsys-verdict")).to_have_count(len(summary.verdicts))
        expect(why.locator(".recsys-overall")).to_have_text(summary.overall)
        # what is served: a cache built from a file outside the data sets is "not measured"; nothing is marked served
        expect(why.locator(".recsys-served")).to_contain_text("not measured")
        expect(why).not_to_contain_text("(served)")
        expect(why).to_contain_text("dvc repro")  # no explore metrics: friendly message
        expect(page.locator(".recsys-exposure")).to_contain_text("ranker's own top-N")

        # find a product by part of its Arabic name
        page.locator(".recsys-search input").fill(query)
        page.locator(".recsys-search input").press("Enter")
        expect(page.locator(".recsys-product-card")).to_contain_text(f"product id {pid}")

        # N rows, straight from the cache
        set_slider(page, "recsys-n", str(N_ROWS))
        cells = page.locator(".recsys-audience tr.recsys-row td.cust")
        expect(cells).to_have_text([str(c) for c in cached])  # exactly N rows, in cache order (auto-retried)
        expect(page.locator(".recsys-summary-box")).to_contain_text(f"Top {N_ROWS} from the cache")

        # move one engagement weight: the ranking changes live and the diff vs the cache is shown
        set_slider(page, f"recsys-weight-{feature}", f"{value:.2f}")
        assert expected.diff is not None
        expect(page.locator(".recsys-summary-box")).to_contain_text(f"{len(expected.diff.entered)} entered")
        expect(cells).to_have_text([str(c) for c in expected.customers])
        shown = table_customers(page)
        assert shown != [str(c) for c in cached] and len(shown) == N_ROWS
        expect(page.locator(".recsys-audience td").filter(has_text="new")).to_have_count(len(expected.diff.entered))

        # export: the browser downloads the CSV of exactly what is shown
        expect(page.locator(".recsys-export")).to_contain_text(f"audience_{pid}_whatif_top{N_ROWS}.csv")
        with page.expect_download() as info:
            page.locator(".recsys-export a.recsys-download-link").click()
        download = info.value
        assert download.suggested_filename == f"audience_{pid}_whatif_top{N_ROWS}.csv"
        text = Path(download.path()).read_text(encoding="utf-8-sig")
        csv = pd.read_csv(io.StringIO(text))
        assert csv.columns.tolist()[:4] == ["product_id", "rank", "customer_id", "score"]
        assert csv["customer_id"].astype(str).tolist() == shown and csv["rank"].tolist() == list(range(1, N_ROWS + 1))
        assert (csv["product_id"].astype(str) == str(pid)).all()
        np.testing.assert_allclose(csv["score"], expected.scores, rtol=1e-12)
        assert csv["exposures"].tolist() == data.exposure.of(expected.customers).tolist()

        # the frequency cap as a what-if: a tighter cap holds busy customers out (an approximation, labelled so)
        page.locator(".recsys-cap select").select_option(label="cap 1 (approximation)")
        box = page.locator(".recsys-summary-box")
        expect(box.locator(".recsys-cap-note")).to_contain_text(
            f"{len(tight.held_out)} customers of the ranking held out"
        )
        expect(box).to_contain_text(f"{len(tight.diff.entered)} entered")
        expect(box).to_contain_text(f"{len(tight.diff.left)} left")
        expect(cells).to_have_text([str(c) for c in tight.customers])
        exposures = page.locator(".recsys-audience tr.recsys-row td.expo")
        expect(exposures).to_have_text([str(x) for x in data.exposure.of(tight.customers)])
        # uncapped is exact: the ranker's own top-n under the changed weights (the served cache is uncapped by default)
        uncapped = "as served (uncapped)" if data.served_cap is None else "uncapped (exact: the ranker's own top-n)"
        page.locator(".recsys-cap select").select_option(label=uncapped)
        expect(box).to_contain_text(f"{len(free.diff.entered)} entered")
        expect(cells).to_have_text([str(c) for c in free.customers])
        expect(box.locator(".recsys-cap-note")).to_have_count(0)

        # search across languages: "perfume" finds the products named عطر, and the page says how many match
        assert idx is not None
        perfume = resolve_query(idx, "perfume", data.settings.search.limit, data.lexicon)
        assert perfume.total > 0 and all("عطر" in str(n) for n in perfume.matches["name"])
        page.locator(".recsys-search input").fill("perfume")
        page.locator(".recsys-search input").press("Enter")
        expect(page.locator(".recsys-search-msg")).to_have_text(perfume.message)
        expect(page.locator(".recsys-search-msg")).to_contain_text(f"{perfume.total:,} product")
        expect(page.locator(".recsys-product-card h3")).to_contain_text("عطر")
        expect(page.locator(".recsys-product-card")).to_contain_text(
            f"product id {perfume.matches['product_id'].iloc[0]}"
        )
        # a search that finds nothing clears the card and the audience, and says what was searched
        page.locator(".recsys-search input").fill("zzqqxx")
        page.locator(".recsys-search input").press("Enter")
        expect(page.locator(".recsys-product-card .recsys-no-match")).to_contain_text("“zzqqxx”")
        expect(page.locator(".recsys-audience tr.recsys-row")).to_have_count(0)

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 0


def test_campaign_builder_in_chromium(chromium: Path, served: Served) -> None:
    data = DashboardData.load(served.paths)
    assert data.lookup is not None
    products = [p.item() for p in data.lookup.product_ids()[:15]]
    expected = campaign_tab.run_campaign(data, products, n=4, cap=1)  # what the page must show and download
    assert len(expected.table) > 0

    with browser_page(chromium) as page:
        page.goto(served.url, timeout=DEADLINE_S * 1000)
        page.locator(".lm-TabBar-tab", has_text="Campaigns").click()  # a tab of dashboard/app_layout.TABS
        tab = page.locator(".recsys-campaign-tab")
        expect(tab).to_be_visible()
        tab.locator(".recsys-campaign-paste textarea").fill("\n".join(map(str, products)))
        tab.locator(".recsys-campaign-add-ids").click()
        expect(tab.locator(".recsys-campaign-selected")).to_contain_text(f"{len(products)} products")
        size = tab.locator(".recsys-campaign-n input")
        size.fill("4")
        size.press("Enter")
        tab.locator(".recsys-campaign-cap select").select_option(label="at most 1 message per customer")
        tab.locator(".recsys-campaign-go").click()
        expect(tab.locator(".recsys-campaign-status")).to_contain_text(f"Campaign built: {len(expected.table)} rows")
        rows = tab.locator("tr.recsys-campaign-row")
        expect(rows).to_have_count(min(len(expected.table), campaign_tab.SHOWN_ROWS))
        expect(tab.locator("tr.recsys-campaign-row td.cust")).to_have_text(
            [str(c) for c in expected.table["customer_id"].head(campaign_tab.SHOWN_ROWS)]
        )
        assert all("interactions" in t for t in tab.locator("tr.recsys-campaign-row td.why").all_inner_texts())
        f = expected.result.figures
        expect(tab.locator(".recsys-campaign-figures")).to_contain_text(f"{f.filled:,} of {f.slots:,}")
        expect(tab.locator("svg.recsys-campaign-hist rect.recsys-hist-capped").first).to_be_attached()
        with page.expect_download() as info:
            tab.locator(".recsys-campaign-download a.recsys-download-link").click()
        download = info.value
        assert download.suggested_filename == expected.filename
        frame, header = read_csv(Path(download.path()))
        assert header["cache_version"] == data.lookup.manifest.version and header["max_per_customer"] == "1"
        assert list(frame.columns) == ["product_id", "product_name", "rank", "customer_id", "score", "reason"]
        assert frame["customer_id"].astype(str).tolist() == expected.table["customer_id"].astype(str).tolist()
        assert frame["customer_id"].value_counts().max() == 1  # cap 1: one message per customer in the campaign


def test_readme_screenshot_from_the_default_artifacts(chromium: Path, tmp_path: Path) -> None:
    paths = DashboardPaths.from_env({})
    needed = [paths.prepared, paths.cache_dir / "manifest.json", paths.evaluation_summary, paths.explore_json]
    missing = [config.relative(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(
            f"default artifacts missing ({', '.join(missing)}): run `make run` first to regenerate "
            f"{config.relative(README_SCREENSHOT)}"
        )
    data = DashboardData.load(paths)
    assert data.ready and not data.issues, data.issues
    rows = min(20, data.n_max)  # the notebook's opening depth
    env = {k: v for k, v in os.environ.items() if k not in (DATA_ENV, REPORTS_ENV)}
    with voila(env, tmp_path / "voila.log") as url, browser_page(chromium) as page:
        page.goto(url, timeout=DEADLINE_S * 1000)
        wait_rendered(page, rows)
        cap = "uncapped" if data.served_cap is None else f"cap {data.served_cap}"
        expect(page.locator(".recsys-summary-box")).to_contain_text(
            f"Top {rows} from the cache (ranker {data.cache_ranker}, {cap})"
        )
        expect(page.locator(".recsys-why svg.recsys-lift-chart")).to_be_visible()  # the evaluation panel's chart
        expect(page.locator(".recsys-exposure")).to_be_visible()
        assert "not found" not in page.locator("body").inner_text()
        # Voila scrolls inside the page, so a full-page shot stops at the viewport: grow it to the content
        height = page.evaluate("Math.max(...Array.from(document.querySelectorAll('*'), e => e.scrollHeight))")
        page.set_viewport_size({"width": 1500, "height": min(int(height) + 40, 4000)})
        wait_rendered(page, rows)
        update = os.environ.get(UPDATE_ENV) == "1"
        target = README_SCREENSHOT if update else SCREENSHOT.with_name("readme-dashboard.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 0
