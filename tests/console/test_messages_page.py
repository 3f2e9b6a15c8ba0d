"""The Messages pages: the event log with its filters, and a message's whole history from
the event store, in a real browser."""

from __future__ import annotations

import re
import time
from email import message_from_string
from email.policy import default
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.api.conftest import Served
from tests.console.conftest import command, log_in, problems_of, screenshot

HOSTILE_SUBJECT = "<script>alert(1)</script> Spring sale"
HOSTILE_NAME = 'Jane "The Boss" O\'Neil <img src=x onerror=alert(2)>'


def send(console: Served, subject: str, to: str) -> str:
    sent = httpx.post(
        f"{console.url}/api/v1/email",
        headers={"Authorization": f"Bearer {console.keys['SENDER_KEY']}"},
        json={"Subject": subject, "ContentType": "html",
              "HtmlContent": '<p>Hi</p><a href="https://shop.example.com/sale">Sale</a>',
              "From": {"email": "news@example.com", "name": HOSTILE_NAME},
              "To": [{"email": to, "name": "Jane"}]},
    )  # fmt: skip
    assert sent.status_code == 200, sent.text
    return str(sent.json()["MessageID"])


def shown_after_reloads(page: Page, locator: str, seconds: float = 60) -> None:
    """The projector writes the reporting tables a moment after the events are stored."""
    deadline = time.monotonic() + seconds
    while page.locator(locator).count() == 0:
        assert time.monotonic() < deadline, f"{locator} never appeared"
        time.sleep(0.5)
        page.reload()


def test_a_sent_mail_is_found_on_the_messages_page_with_its_whole_history(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    domain_id = command(console, "EmailGateway.GetDomains")["Domains"][0]["DomainID"]
    assert command(console, "EmailGateway.UpdateDomain", DomainID=domain_id,
                   OpenTracking="1")["Success"]  # fmt: skip
    message_id = send(console, HOSTILE_SUBJECT, "jane@example.net")
    send(console, "Weekly digest", "joe@example.net")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Messages").click()
    shown_after_reloads(page, "table.events td:has-text('delivered')")
    expect(page.get_by_role("cell", name=HOSTILE_SUBJECT).first).to_be_visible()
    screenshot(page, tmp_path, "messages")

    # The Query syntax of GetEvents, and the event filter.
    page.get_by_label("Search").fill("subject:digest")
    page.get_by_role("button", name="Search").click()
    subjects = page.locator("table.events td[data-label=Subject]").all_inner_texts()
    assert subjects and set(subjects) == {"Weekly digest"}
    page.get_by_label("Search").fill("recipient:jane@example.net")
    page.get_by_label("Event").select_option("delivered")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table.events tbody tr")).to_have_count(1)
    page.get_by_label("Search").fill("nosuchfield:x")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid Option specified: Query")

    # The history: every event of the message, from the event store.
    page.goto(f"{console.url}/console/messages/{message_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text(HOSTILE_SUBJECT)
    raw = page.locator("details.source pre").first.text_content() or ""
    html = message_from_string(raw, policy=default).get_body(("html",))
    assert html is not None, raw
    pixel = re.search(r"https?://[^\"'\s]+/t/o/[^\"'\s]+\.gif", html.get_content())
    assert pixel is not None, html.get_content()
    opened = httpx.get(
        f"{console.url}{urlsplit(pixel.group(0)).path}",
        headers={"User-Agent": "Thunderbird/128.0 (console test)"},
    )
    assert opened.status_code == 200
    deadline = time.monotonic() + 30
    while page.locator(".timeline strong", has_text="Opened").count() == 0:
        assert time.monotonic() < deadline, "the open never reached the history"
        time.sleep(0.3)
        page.reload()
    events = page.locator("section.recipient .timeline strong").all_inner_texts()
    assert events[0] == "Accepted" and "Delivered" in events and events[-1] == "Opened", events
    delivered = page.locator("section.recipient .timeline li", has_text="Delivered")
    expect(delivered).to_contain_text("sandbox: kept in the event store, not sent")
    opened_event = page.locator("section.recipient .timeline li", has_text="Opened")
    expect(opened_event).to_contain_text("Thunderbird/128.0 (console test)")
    page.locator("details.source summary").first.click()
    expect(page.locator("details.source pre").first).to_contain_text("Subject: ")
    screenshot(page, tmp_path, "message-history")
    assert problems == [], problems  # nothing from the mail ran
    page.close()


def test_another_accounts_messages_are_not_found(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    message_id = send(console, "Private", "jane@example.net")
    domain_id = command(console, "EmailGateway.GetDomains")["Domains"][0]["DomainID"]
    page = browser.new_page()
    log_in(page, console.url, console.other_login)
    for path in (f"/console/messages/{message_id}", "/console/messages/not-an-id"):
        response = page.goto(f"{console.url}{path}")
        assert response is not None and response.status == 404
    response = page.goto(f"{console.url}/console/messages?domain={domain_id}")
    assert response is not None and response.status == 422
    expect(page.locator("table.events")).to_have_count(0)
    page.close()
