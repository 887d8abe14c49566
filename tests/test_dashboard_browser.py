"""The dashboard in a real browser: Voilà serves dashboard/app.ipynb on 127.0.0.1 over tiny artifacts, Debian chromium
(driven by Playwright's sync API, never a downloaded browser) searches a product, sees N rows, moves a weight slider,
sees the ranking change, downloads the CSV and checks it, and saves test-artifacts/dashboard.png."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from dashboard.artifacts import DashboardData
from dashboard.search import resolve_query
from dashboard.serve import voila_command
from dashboard.settings import DATA_ENV, DashboardPaths, REPORTS_ENV
from dashboard.whatif import WhatIfSettings
from recsys import config

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DEADLINE_S = 180.0  # generous bound for a loaded machine; never asserted as a timing
N_ROWS = 7
SCREENSHOT = config.PROJ_ROOT / "test-artifacts" / "dashboard.png"



@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium; skipped with a reason outside CI when missing, a failure in CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: the test target must run scripts/ensure_deb.sh /usr/bin/chromium chromium fonts-dejavu-core first")
        pytest.skip(f"{CHROMIUM} is not installed (run scripts/ensure_deb.sh /usr/bin/chromium chromium fonts-dejavu-core); browser test skipped outside CI")
    return CHROMIUM


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until something listens on 127.0.0.1:port; fail with voila's log if it exits or times out."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"voila exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"voila did not listen on port {port}:\n{log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the voila we started (it shuts its kernels down), then end any of its children still running."""
    children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    alive = [c for c in children if c.is_running()]
    for child in alive:
        child.terminate()
    _, still = psutil.wait_procs(alive, timeout=10)
    for child in still:
        child.kill()


@dataclass(frozen=True)
class Served:
    """A running dashboard and the artifacts it reads."""

    url: str
    paths: DashboardPaths


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> DashboardPaths:
    """Tiny generated log -> prepare -> cache (the real pipeline functions), laid out like data/; no metrics files."""
    from recsys.cache.build import build_cache_from_params
    from recsys.data.contract import source_spec_from_params
    from recsys.data.prepare import prepare
    from recsys.data.synthetic import generate

    root = tmp_path_factory.mktemp("dashboard")
    paths = DashboardPaths.from_env({DATA_ENV: str(root / "data"), REPORTS_ENV: str(root / "reports")})
    raw = root / "data" / "raw" / "synthetic.csv"
    generate(raw, scale=0.01, seed=42)
    prepare(raw, paths.prepared, source_spec_from_params(config.load_params("prepare")["source"]))
    build_cache_from_params(prepared_path=paths.prepared, cache_dir=paths.cache_dir)
    return paths


@pytest.fixture(scope="module")
def served(chromium: Path, artifacts: DashboardPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`voila dashboard/app.ipynb` on a free 127.0.0.1 port, pointed at the tiny artifacts; stopped afterwards."""
    port = free_port()
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    env = {**os.environ, DATA_ENV: str(artifacts.prepared.parents[1]),
           REPORTS_ENV: str(artifacts.evaluate_json.parents[1]), "OPENBLAS_NUM_THREADS": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(voila_command(port), cwd=config.PROJ_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        yield Served(f"http://127.0.0.1:{port}/", artifacts)
    finally:
        stop(proc)


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
    for feature, value in (("recency", 1.0), ("total_interactions", 0.0), ("interaction_frequency", 1.0), ("avg_event_score", 1.0)):
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

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300}, accept_downloads=True)
            page.set_default_timeout(DEADLINE_S * 1000)
            page.goto(served.url, timeout=DEADLINE_S * 1000)
            expect(page.locator(".recsys-audience tr.recsys-row").first).to_be_visible()
            expect(page.locator(".recsys-why")).to_contain_text("dvc repro")  # no metrics files: friendly message

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

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 0
