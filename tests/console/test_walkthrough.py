"""The walk of a new user, in one test and a real browser: log in, add a domain and copy
its records, send a mail through /api/v1/email, find it on the Messages page, open its
history, and see the overview count it."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.api.conftest import Served
from tests.console.conftest import log_in, problems_of
from tests.console.test_messages_page import send, shown_after_reloads


def test_a_new_user_walks_from_login_to_the_overview(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    expect(page.locator("[data-figure=Sent]")).to_have_text("0")

    sections = page.get_by_role("navigation", name="Sections")
    sections.get_by_role("link", name="Domains").click()
    page.get_by_label("Domain name").fill("mail.example.net")
    page.get_by_role("button", name="Add domain").click()
    host = page.locator("#host-1").inner_text().strip()
    page.get_by_role("button", name="Copy the host of").first.click()
    assert page.evaluate("navigator.clipboard.readText()") == host

    message_id = send(console, "Welcome aboard", "first.reader@example.org")
    sections.get_by_role("link", name="Messages").click()
    shown_after_reloads(page, "table.events td:has-text('delivered')")
    page.get_by_role(
        "link", name="History of the message to first.reader@example.org"
    ).first.click()
    expect(page).to_have_url(f"{console.url}/console/messages/{message_id}")
    events = page.locator("section.recipient .timeline strong").all_inner_texts()
    assert events[0] == "Accepted" and "Delivered" in events, events

    sections.get_by_role("link", name="Overview").click()
    expect(page.locator("[data-figure=Sent]")).to_have_text("1")
    expect(page.locator("[data-figure=Delivered]")).to_have_text("1")
    page.locator("details.series summary").click()
    sent = page.locator("details.series tbody td:nth-child(2)").all_inner_texts()
    assert sum(int(value) for value in sent) == 1  # the chart's own figures count it
    assert problems == [], problems
    context.close()
