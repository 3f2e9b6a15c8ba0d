"""``/docs`` in a real browser (Debian's headless Chromium, driven by Playwright) on a
machine whose network reaches only the engine: every request to another host is
refused, as on a server without internet access, and every operation is listed."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Route, sync_playwright

from tests.api.conftest import Served

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine notes advise: no background connections that a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def test_the_docs_page_lists_every_operation_with_the_network_closed(
    served: Served, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: make test-deps installs Debian's chromium")
    document = httpx.get(f"{served.url}/openapi.json").json()
    operations = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    engine = urlsplit(served.url).netloc
    elsewhere: list[str] = []

    def only_the_engine(route: Route) -> None:
        if urlsplit(route.request.url).netloc == engine:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.route("**/*", only_the_engine)
            page.goto(f"{served.url}/docs")
            page.wait_for_selector(".opblock-summary", timeout=30_000)
            listed = {
                (
                    block.query_selector(".opblock-summary-method").inner_text().strip(),  # type: ignore[union-attr]
                    block.query_selector(".opblock-summary-path").inner_text().strip(),  # type: ignore[union-attr]
                )
                for block in page.query_selector_all(".opblock-summary")
            }
            page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
        finally:
            browser.close()

    assert elsewhere == [], "the page asked another host"
    # Swagger UI breaks long paths with zero-width spaces.
    assert {(method, path.replace("\u200b", "")) for method, path in listed} == operations
