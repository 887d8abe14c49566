"""/docs and /redoc render in Debian chromium with every request outside 127.0.0.1 blocked (assets from a pinned
package, never a CDN); / links to them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Route, expect, sync_playwright
from test_dashboard_browser import CHROMIUM_ARGS, DEADLINE_S, chromium  # noqa: F401  (the fixture)

from conftest import RunningServer

pytestmark = [pytest.mark.browser, pytest.mark.server]


def test_docs_render_offline(
    chromium: Path,  # noqa: F811  (the fixture imported above)
    cache_dir: Path,
    start_service: Callable[..., RunningServer],
) -> None:
    server = start_service(cache_dir, RECSYS_RELOAD_INTERVAL_S="0", RECSYS_API_KEYS="docs-test-key-0123456789")
    blocked: list[str] = []
    local: list[str] = []
    refused: list[str] = []  # requests the pages' Content-Security-Policy stopped before they left the browser

    def only_loopback(route: Route) -> None:
        host = urlsplit(route.request.url).hostname
        if host == "127.0.0.1":
            local.append(route.request.url)
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(DEADLINE_S * 1000)
            page.route("**/*", only_loopback)
            page.on("console", lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None)
            page.goto(f"{server.base}/")
            expect(page.locator("a[href='/docs']")).to_be_visible()
            page.click("a[href='/docs']")
            operations = page.locator(".opblock-summary-path")
            expect(operations.filter(has_text="/recommend/{product_id}")).to_be_visible(timeout=DEADLINE_S * 1000)
            expect(operations.filter(has_text="/recommend/batch")).to_be_visible()
            expect(page.locator(".btn.authorize")).to_be_visible()  # keys on: Swagger UI offers to send one
            page.goto(f"{server.base}/redoc")
            title = page.locator("h2", has_text="Top-n audience for one product")
            expect(title).to_be_visible(timeout=DEADLINE_S * 1000)
        finally:
            browser.close()
    assert blocked == [], f"the docs tried to load assets from outside 127.0.0.1: {blocked}"
    assert any(url.endswith("/docs/static/swagger-ui-bundle.js") for url in local)
    assert any(url.endswith("/docs/static/redoc.standalone.js") for url in local)
    assert all("cdn" in text or "img-src" in text for text in refused), refused  # at most ReDoc's logo
