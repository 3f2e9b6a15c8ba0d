"""Campaigns in a real browser: one made from an email and a list, approved, and watched
until its progress bar reaches 100 %."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.api.conftest import Served
from tests.console.conftest import command, log_in, problems_of, screenshot, session_of

HOSTILE_NAME = "<img src=x onerror=alert(1)> Autumn"


def test_a_campaign_is_made_approved_and_its_progress_reaches_the_end(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    made = command(console, "List.Create", ListName="Readers", Fields="EmailAddress,FirstName")
    rows = "".join(f"reader{n}@example.net,Reader{n}\n" for n in range(12))
    imported = command(console, "Subscribers.Import", ListID=made["ListID"], Format="csv",
                       Data="EmailAddress,FirstName\n" + rows)  # fmt: skip
    assert imported["Imported"] == 12
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_role("link", name="write an email").click()

    # An email from an address on no domain of the account is refused with its text.
    page.get_by_label("Subject").fill("Hello %Subscriber:FirstName|friend%")
    page.get_by_label("From name").fill("News")
    page.get_by_label("From address (on one of your domains)").fill("news@elsewhere.example")
    page.get_by_label("HTML").fill("<p>Hi %Subscriber:FirstName|there%</p>")
    page.get_by_role("button", name="Save the email").click()
    expect(page.get_by_role("alert")).to_have_text("Invalid From email.")
    page.get_by_label("From address (on one of your domains)").fill("news@example.com")
    page.get_by_role("button", name="Save the email").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("New campaign")
    page.get_by_label("Name").fill(HOSTILE_NAME)
    page.get_by_label("To the list").select_option(label="Readers (12)")
    page.get_by_role("button", name="Make the campaign").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(HOSTILE_NAME)
    expect(page.locator("[data-field=Status]")).to_have_text("Draft")

    # A draft is edited on its page: here, to be sent at a date, then at once again.
    page.get_by_label("At a date and time").check()
    page.get_by_label("Date", exact=True).fill("2030-01-07")
    page.get_by_label("Time", exact=True).fill("09:30")
    page.get_by_label("Time zone").select_option("Europe/Paris")
    page.get_by_role("button", name="Save the changes").click()
    expect(page.get_by_role("status")).to_have_text("The changes were saved.")
    campaign_id = command(console, "Campaigns.Get")["Campaigns"][0]["CampaignID"]
    saved = command(console, "Campaign.Get", CampaignID=campaign_id)["Campaign"]
    assert saved["ScheduleType"] == "Future"
    assert saved["Schedule"]["send_at_local"] == "2030-01-07T09:30"
    assert saved["RecipientListsAndSegments"] == made["ListID"]
    expect(page.get_by_label("Date", exact=True)).to_have_value("2030-01-07")  # shown as saved
    page.get_by_label("As soon as it is approved").check()
    page.get_by_role("button", name="Save the changes").click()
    expect(page.get_by_role("status")).to_have_text("The changes were saved.")

    page.get_by_role("button", name="Approve and send").click()
    expect(page.get_by_role("status")).to_have_text("Approved: it is sent when it is due.")
    # No reload: the page follows the sending.
    expect(page.locator("#progress")).to_have_attribute("value", "100", timeout=60_000)
    expect(page.locator("[data-field=Status]")).to_have_text("Sent", timeout=30_000)
    expect(page.locator("[data-field=TotalDelivered]")).to_have_text("12")
    # Its throughput chart is drawn, and its steps' deliveries add up to the campaign's.
    expect(page.locator("#throughput-chart canvas")).to_have_count(1)
    progress = page.request.get(f"{page.url.split('?')[0]}/progress.json").json()
    chart = progress["Chart"]
    assert sum(point["delivered"] for point in chart["Series"]) == 12
    screenshot(page, tmp_path, "campaign")

    page.get_by_role("link", name="Campaigns", exact=True).first.click()
    expect(page.get_by_role("link", name=HOSTILE_NAME)).to_be_visible()
    page.get_by_role("link", name="Sent", exact=True).click()
    expect(page.locator("table.campaigns tbody tr")).to_have_count(1)
    assert problems == [], problems
    page.close()

    cookies, csrf = session_of(browser, console, console.other_login)
    path = f"{console.url}/console/campaigns/{campaign_id}"
    assert httpx.get(path, cookies=cookies).status_code == 404
    assert httpx.get(f"{path}/progress.json", cookies=cookies).status_code == 404
    sent = httpx.post(path, data={"csrf": csrf, "action": "cancel"}, cookies=cookies)
    assert sent.status_code == 404
