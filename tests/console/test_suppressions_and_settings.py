"""The suppression lists and the account's settings in a real browser."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.api.conftest import Served
from tests.console.conftest import command, log_in, problems_of, screenshot, session_of


def test_a_person_adds_searches_exports_and_removes_suppressed_addresses(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Suppressions").click()
    expect(page.get_by_role("link", name="Unsubscribes", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    for address in ("jane@example.net", "joe@example.net"):
        page.get_by_label("Add an address to the unsubscribes").fill(address)
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.get_by_role("status").first).to_have_text(f"{address} was added to the list.")
    expect(page.get_by_role("rowheader", name="jane@example.net")).to_be_visible()

    # An address on one list cannot be put on another: the command's own refusal.
    page.get_by_role("link", name="Bounces", exact=True).click()
    page.get_by_label("Add an address to the bounces").fill("jane@example.net")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text(
        "Email address is on account's Unsubscribe List."
    )
    page.get_by_role("link", name="Unsubscribes", exact=True).click()

    page.get_by_label("Search the unsubscribes").fill("JANE")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table.suppressions tbody tr")).to_have_count(1)
    screenshot(page, tmp_path, "suppressions")

    with page.expect_download() as downloading:
        page.get_by_role("link", name="Export the unsubscribes as CSV").click()
    exported = Path(downloading.value.path()).read_text()
    assert exported.splitlines()[0] == "EmailAddress,Reason,AddedDate"
    assert {line.split(",")[0] for line in exported.splitlines()[1:]} == {
        "jane@example.net", "joe@example.net",
    }  # fmt: skip

    page.get_by_role("button", name="Remove jane@example.net").click()
    expect(page.get_by_role("status").first).to_have_text(
        "jane@example.net was removed from the list."
    )
    listed = command(console, "Unsubscribes.Get")["Addresses"]
    assert [a["EmailAddress"] for a in listed] == ["joe@example.net"]
    assert problems == [], problems
    page.close()

    # The other account's lists are its own.
    other = browser.new_page()
    log_in(other, console.url, console.other_login)
    other.goto(f"{console.url}/console/suppressions")
    expect(other.locator("table.suppressions")).to_have_count(0)
    other.close()


def test_an_invalid_address_is_refused_with_the_commands_text(
    console: Served, browser: Browser
) -> None:
    cookies, csrf = session_of(browser, console, console.login)
    sent = httpx.post(
        f"{console.url}/console/suppressions?list=blocks",
        data={"csrf": csrf, "action": "add", "address": "not-an-address"}, cookies=cookies,
    )  # fmt: skip
    assert sent.status_code == 422
    assert "Email address is invalid." in sent.text
    assert command(console, "Blocks.Get")["Addresses"] == []


def test_the_account_settings_are_changed_and_the_console_reads_times_in_the_new_zone(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page()
    log_in(page, console.url, console.login)
    page.goto(f"{console.url}/console/settings")
    page.get_by_label("Time zone").select_option("Europe/Paris")
    page.get_by_label("Custom ID header").fill("X-Customer-Ref")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("The settings were saved.")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Paris")
    account = command(console, "Account.Get")["Account"]
    assert (account["TimeZone"], account["CustomIDHeader"]) == ("Europe/Paris", "X-Customer-Ref")
    screenshot(page, tmp_path, "settings")

    page.get_by_label("Custom ID header").fill("Bad Header:")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid Option specified: CustomIDHeader")
    assert command(console, "Account.Get")["Account"]["CustomIDHeader"] == "X-Customer-Ref"
    page.close()
