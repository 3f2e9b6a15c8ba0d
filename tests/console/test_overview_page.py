"""The overview in a real browser: the account's figures, drawn by the chart library from
the package, refreshing by themselves while mail flows."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.api.conftest import Served
from tests.console.conftest import log_in, problems_of, screenshot
from tests.console.test_messages_page import send


def test_the_overview_counts_new_mail_by_itself_and_draws_its_course(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(page.locator("[data-figure=Sent]")).to_have_text("0")
    expect(page.locator(".uplot canvas")).to_have_count(1)  # drawn by uPlot, from the package

    for n in range(3):
        send(console, f"Overview {n}", f"reader{n}@example.net")
    # No reload: the page refreshes its figures every ten seconds.
    expect(page.locator("[data-figure=Sent]")).to_have_text("3", timeout=45_000)
    expect(page.locator("[data-figure=Delivered]")).to_have_text("3", timeout=15_000)
    expect(page.locator("[data-refreshed]")).to_contain_text("Updated at")
    screenshot(page, tmp_path, "overview")

    page.reload()
    page.locator("details.series summary").click()
    sent = page.locator("details.series tbody td:nth-child(2)").all_inner_texts()
    assert sum(int(value) for value in sent) == 3
    hours = page.locator("details.series tbody th").count()
    assert 24 <= hours <= 25  # every hour of the last day, the quiet ones at zero

    page.get_by_role("link", name="Last 7 days").click()
    expect(page.get_by_role("link", name="Last 7 days")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("heading", name="By day")).to_be_visible()
    expect(page.locator("[data-figure=Sent]")).to_have_text("3")
    assert problems == [], problems
    page.close()
