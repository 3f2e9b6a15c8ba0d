"""Lists and subscribers in a real browser: a list made, a CSV imported with its refused
lines shown, subscribers searched, unsubscribed and deleted."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.api.conftest import Served
from tests.console.conftest import command, log_in, problems_of, screenshot, session_of

CSV = (
    "EmailAddress,FirstName\n"
    "ann@example.net,Ann\n"
    "bob@example.net,<script>alert(1)</script>\n"
    "not-an-address,Nobody\n"
    "cy@example.net,Cy\n"
)


def test_a_person_makes_a_list_imports_a_file_and_manages_its_subscribers(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Lists").click()
    page.get_by_label("Name").fill("Newsletter")
    page.get_by_role("button", name="Make the list").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Newsletter")

    upload = tmp_path / "readers.csv"
    upload.write_text(CSV)
    page.get_by_label("File").set_input_files(str(upload))
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status").first).to_have_text("Imported 3; 0 already there; 1 refused.")
    expect(page.locator("table.refused tbody tr")).to_have_count(1)
    refused = page.locator("table.refused tbody td").all_inner_texts()
    assert refused == ["4", "Email address is invalid."], refused  # the file's fourth line
    expect(page.get_by_role("cell", name="<script>alert(1)</script>")).to_be_visible()
    screenshot(page, tmp_path, "list")

    page.get_by_label("Search the subscribers").fill("ANN@")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table.subscribers tbody tr")).to_have_count(1)
    page.get_by_role("button", name="Unsubscribe ann@example.net").click()
    expect(page.get_by_role("status").first).to_have_text("ann@example.net was unsubscribed.")
    page.get_by_role("button", name="Delete cy@example.net").click()
    expect(page.get_by_role("status").first).to_have_text("cy@example.net was deleted.")

    list_id = page.url.rsplit("/", 1)[1].split("?")[0]
    found = command(console, "Subscribers.Get", ListID=list_id)["Subscribers"]
    assert {(s["EmailAddress"], s["Status"]) for s in found} == {
        ("ann@example.net", "Unsubscribed"), ("bob@example.net", "Active"),
    }  # fmt: skip
    assert problems == [], problems
    page.close()

    # Another account's list is not found, and its forms change nothing.
    cookies, csrf = session_of(browser, console, console.other_login)
    assert httpx.get(f"{console.url}/console/lists/{list_id}", cookies=cookies).status_code == 404
    sent = httpx.post(f"{console.url}/console/lists/{list_id}",
                      data={"csrf": csrf, "action": "delete_list"}, cookies=cookies)  # fmt: skip
    assert sent.status_code == 404
    assert len(command(console, "Lists.Get")["Lists"]) == 1
