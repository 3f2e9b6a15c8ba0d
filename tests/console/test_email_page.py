"""A campaign email's page in a real browser: its preview as a chosen subscriber gets it,
merge tags filled and its HTML in a frame where no script runs, and its editing."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.api.conftest import Served
from tests.console.conftest import command, log_in, problems_of, screenshot, session_of

HTML = (
    "<p>Hi %Subscriber:FirstName|there%, this is for you.</p>"
    "<script>alert(1)</script><img src=x onerror=alert(2)>"
)


def test_an_email_is_previewed_as_each_subscriber_gets_it_and_edited(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    made = command(console, "List.Create", ListName="Readers", Fields="EmailAddress,FirstName")
    command(console, "Subscribers.Import", ListID=made["ListID"], Format="csv",
            Data="EmailAddress,FirstName\nzoe@example.net,Zoë\nanon@example.net,\n")  # fmt: skip
    email = command(console, "Email.Create", EmailName="Welcome", FromName="News",
                    FromEmail="news@example.com", MessageHTML=HTML,
                    Subject="Hello %Subscriber:FirstName|friend%")  # fmt: skip
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    page.goto(f"{console.url}/console/campaigns")
    page.get_by_role("link", name="Emails").click()
    page.get_by_role("link", name="Welcome").click()

    page.get_by_label("Subscriber (empty: the list's first)").fill("zoe@example.net")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".preview-subject")).to_have_text("Hello Zoë")
    frame = page.frame_locator("iframe.preview")
    expect(frame.locator("p")).to_have_text("Hi Zoë, this is for you.")
    screenshot(page, tmp_path, "email-preview")

    page.get_by_label("Subscriber (empty: the list's first)").fill("anon@example.net")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".preview-subject")).to_have_text("Hello friend")
    page.get_by_label("Subscriber (empty: the list's first)").fill("nobody@example.net")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("alert")).to_have_text("Email address is not on this list.")

    page.get_by_label("Subject").fill("Welcome, %Subscriber:FirstName|friend%")
    page.get_by_role("button", name="Save the email").click()
    expect(page.get_by_role("status")).to_have_text("The email was saved.")
    saved = command(console, "Email.Get", EmailID=email["EmailID"])["Email"]
    assert saved["Subject"] == "Welcome, %Subscriber:FirstName|friend%"
    assert saved["MessageHTML"] == HTML  # the rest as it was
    assert not any("dialog" in problem for problem in problems), problems  # nothing ran
    page.close()

    cookies, csrf = session_of(browser, console, console.other_login)
    path = f"{console.url}/console/emails/{email['EmailID']}"
    assert httpx.get(path, cookies=cookies).status_code == 404
    sent = httpx.post(path, cookies=cookies,
                      data={"csrf": csrf, "subject": "taken", "from_name": "x",
                            "from_email": "x@example.org", "html": "<p>x</p>"})  # fmt: skip
    assert sent.status_code == 404
    assert command(console, "Email.Get", EmailID=email["EmailID"])["Email"]["Subject"] == (
        "Welcome, %Subscriber:FirstName|friend%"
    )
