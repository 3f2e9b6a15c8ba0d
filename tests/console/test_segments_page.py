"""The segment editor in a real browser: rules on a list's fields, the subscribers they
pick counted before the segment is saved."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.api.conftest import Served
from tests.console.conftest import command, log_in, problems_of, screenshot, session_of

READERS = (
    "EmailAddress,FirstName,City\n"
    "ann@example.net,Ann,Paris\n"
    "bob@example.net,Bob,Paris\n"
    "cy@example.net,Cy,Lyon\n"
    "al@example.net,Al,Lyon\n"
)


def test_a_segment_is_counted_then_saved(console: Served, browser: Browser, tmp_path: Path) -> None:
    made = command(console, "List.Create", ListName="Readers",
                   Fields="EmailAddress,FirstName,City")  # fmt: skip
    command(console, "Subscribers.Import", ListID=made["ListID"], Format="csv", Data=READERS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    page.goto(f"{console.url}/console/lists")
    page.get_by_role("link", name="Segments").click()
    page.get_by_label("The subscribers who match").select_option("all")
    page.get_by_label("Field of rule 1").fill("City")
    page.get_by_label("Comparison of rule 1").select_option("equals")
    page.get_by_label("Value of rule 1").fill("Paris")
    page.get_by_role("button", name="Count the subscribers").click()
    expect(page.locator(".match-count")).to_have_text("2 subscribers match.")

    page.get_by_label("Field of rule 2").fill("FirstName")
    page.get_by_label("Comparison of rule 2").select_option("begins_with")
    page.get_by_label("Value of rule 2").fill("A")
    page.get_by_role("button", name="Count the subscribers").click()
    expect(page.locator(".match-count")).to_have_text("1 subscriber matches.")
    expect(page.get_by_label("Value of rule 1")).to_have_value("Paris")  # the rules stay

    page.get_by_label("The subscribers who match").select_option("any")
    page.get_by_role("button", name="Count the subscribers").click()
    expect(page.locator(".match-count")).to_have_text("3 subscribers match.")
    page.get_by_label("Name").fill("Paris or A")
    page.get_by_role("button", name="Save the segment").click()
    expect(page.get_by_role("status")).to_have_text("The segment was saved.")
    expect(page.get_by_role("rowheader", name="Paris or A")).to_be_visible()
    screenshot(page, tmp_path, "segments")
    assert [s["SegmentName"] for s in command(console, "Segments.Get")["Segments"]] == [
        "Paris or A"
    ]
    assert problems == [], problems
    page.close()

    # Another account cannot count or save rules over this account's list.
    cookies, csrf = session_of(browser, console, console.other_login)
    for action in ("count", "save"):
        sent = httpx.post(
            f"{console.url}/console/segments", cookies=cookies,
            data={"csrf": csrf, "action": action, "list": made["ListID"], "match": "all",
                  "field_1": "City", "operator_1": "equals", "value_1": "Paris", "name": "x"},
        )  # fmt: skip
        assert sent.status_code == 422, action
        assert "subscribers match" not in sent.text
    assert len(command(console, "Segments.Get")["Segments"]) == 1
