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


MEMBERS = "EmailAddress,Plan\nann@example.net,gold\nzed@example.net,gold\ncy@example.net,free\n"


def test_a_segment_of_two_lists_is_counted_then_saved(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    made = command(console, "List.Create", ListName="Readers",
                   Fields="EmailAddress,FirstName,City")  # fmt: skip
    command(console, "Subscribers.Import", ListID=made["ListID"], Format="csv", Data=READERS)
    members = command(console, "List.Create", ListName="Members", Fields="EmailAddress,Plan")
    command(console, "Subscribers.Import", ListID=members["ListID"], Format="csv", Data=MEMBERS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    page.goto(f"{console.url}/console/lists")
    page.get_by_role("link", name="Segments").click()
    page.get_by_label("Subscribers of the list").select_option(label="Readers")
    page.get_by_label("who match").select_option("all")
    page.get_by_label("Field of rule 1 in group 1").fill("City")
    page.get_by_label("Comparison of rule 1 in group 1").select_option("equals")
    page.get_by_label("Value of rule 1 in group 1").fill("Paris")
    page.get_by_label("Value of rule 1 in group 1").press("Enter")  # Enter counts
    expect(page.locator(".match-count")).to_have_text("2 subscribers match.")

    page.get_by_label("Field of rule 2 in group 1").fill("FirstName")
    page.get_by_label("Comparison of rule 2 in group 1").select_option("begins_with")
    page.get_by_label("Value of rule 2 in group 1").fill("A")
    page.get_by_role("button", name="Count the subscribers").click()
    expect(page.locator(".match-count")).to_have_text("1 subscriber matches.")
    expect(page.get_by_label("Value of rule 1 in group 1")).to_have_value("Paris")  # kept

    # A third rule row, then a group of the other list: the rules typed so far stay.
    page.get_by_role("button", name="Add a rule to group 1").click()
    expect(page.get_by_label("Field of rule 3 in group 1")).to_have_value("")
    expect(page.get_by_label("Value of rule 2 in group 1")).to_have_value("A")
    page.get_by_role("button", name="Add a group of another list or other rules").click()
    page.get_by_label("Subscribers of the list").nth(1).select_option(label="Members")
    page.get_by_label("Field of rule 1 in group 2").fill("Plan")
    page.get_by_label("Value of rule 1 in group 2").fill("gold")
    page.get_by_label("The subscribers who match").select_option("any")
    page.get_by_role("button", name="Count the subscribers").click()
    expect(page.locator(".match-count")).to_have_text("2 subscribers match.")  # ann, zed
    page.get_by_label("The subscribers who match").select_option("all")
    page.get_by_role("button", name="Count the subscribers").click()
    expect(page.locator(".match-count")).to_have_text("1 subscriber matches.")  # ann

    page.get_by_label("The subscribers who match").select_option("any")
    page.get_by_label("Name").fill("Paris A, or gold")
    page.get_by_role("button", name="Save the segment").click()
    expect(page.get_by_role("status")).to_have_text("The segment was saved.")
    expect(page.get_by_role("rowheader", name="Paris A, or gold")).to_be_visible()
    expect(page.locator("table.segments td").first).to_have_text(
        "Readers: City equals Paris and FirstName begins with A — or — Members: Plan equals gold"
    )
    screenshot(page, tmp_path, "segments")
    saved = command(console, "Segments.Get")["Segments"]
    assert [s["SegmentName"] for s in saved] == ["Paris A, or gold"]
    assert problems == [], problems

    # A group removed takes its rules with it.
    page.get_by_role("button", name="Add a group of another list or other rules").click()
    page.get_by_role("button", name="Remove group 1").click()
    expect(page.get_by_label("Field of rule 1 in group 2")).to_have_count(0)
    page.close()

    # Another account cannot count or save rules over this account's list.
    cookies, csrf = session_of(browser, console, console.other_login)
    for action in ("count", "save"):
        sent = httpx.post(
            f"{console.url}/console/segments", cookies=cookies,
            data={"csrf": csrf, "action": action, "list_1": made["ListID"], "match_1": "all",
                  "field_1_1": "City", "operator_1_1": "equals", "value_1_1": "Paris",
                  "name": "x"},
        )  # fmt: skip
        assert sent.status_code == 422, action
        assert "subscribers match" not in sent.text
    assert len(command(console, "Segments.Get")["Segments"]) == 1
    # Hostile counts of rows and groups are bounded, never a failure.
    sent = httpx.post(f"{console.url}/console/segments", cookies=cookies,
                      data={"csrf": csrf, "action": "add_rule:99999999999", "groups": "-4",
                            "rules_1": "10000000000"})  # fmt: skip
    assert sent.status_code == 200
