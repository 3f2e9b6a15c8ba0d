"""The Team page in a real browser (issue 22): the owner adds a marketer, the marketer
works within the role and is refused the rest, and the changes are in the audit trail."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.api.conftest import Served
from tests.console.conftest import command, log_in, problems_of, screenshot, session_of

PASSWORD = "a-long-enough-password"


def test_the_owner_adds_a_marketer_who_is_held_to_the_role(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Team").click()
    expect(page.get_by_role("rowheader", name=console.login[0])).to_be_visible()
    page.get_by_label("Username").fill("mara")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Role", exact=True).select_option("marketer")
    page.get_by_role("button", name="Add the user").click()
    expect(page.get_by_role("status").first).to_have_text("mara was added.")
    # A name taken is refused with the command's text, and nothing is added.
    page.get_by_label("Username").fill("MARA")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Add the user").click()
    expect(page.get_by_role("alert")).to_have_text("The supplied Username is already in use.")
    users = command(console, "Users.Get")["Users"]
    assert [(u["Username"], u["Role"]) for u in users] == [
        (console.login[0], "owner"), ("mara", "marketer"),
    ]  # fmt: skip
    # The page shows who did it, once the audit reader has read it.
    page.goto(f"{console.url}/console/team")
    for _ in range(100):
        if page.locator("table.audit code", has_text="User.Create").count():
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(page.locator("table.audit tbody tr").first).to_contain_text("User.Create")
    screenshot(page, tmp_path, "team")
    assert problems == [], problems
    page.close()

    marketer = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(marketer, console.url, ("mara", PASSWORD))
    expect(marketer.locator(".who")).to_contain_text("mara marketer")
    marketer.goto(f"{console.url}/console/lists")
    marketer.get_by_label("Name").fill("Spring")
    marketer.get_by_role("button", name="Make the list").click()
    expect(marketer.get_by_role("heading", name="Spring")).to_be_visible()
    # A sender domain is a developer's: the page says so, and nothing is added.
    marketer.goto(f"{console.url}/console/domains")
    marketer.get_by_label("Domain name").fill("news.example.net")
    marketer.get_by_role("button", name="Add domain").click()
    expect(
        marketer.get_by_text("The marketer role may not run EmailGateway.AddDomain.")
    ).to_be_visible()
    screenshot(marketer, tmp_path, "refused-role")
    domains = command(console, "EmailGateway.GetDomains")["Domains"]
    assert "news.example.net" not in [d["DomainName"] for d in domains]
    # A marketer sees the team but manages nobody.
    marketer.goto(f"{console.url}/console/team")
    expect(marketer.get_by_role("button", name="Add the user")).to_have_count(0)
    expect(marketer.locator("table.audit")).to_have_count(0)
    marketer.close()

    cookies, csrf = session_of(browser, console, ("mara", PASSWORD))
    posted = httpx.post(
        f"{console.url}/console/team",
        data={"csrf": csrf, "action": "add", "username": "eve", "password": PASSWORD,
              "role": "owner"},
        cookies=cookies,
    )  # fmt: skip
    assert posted.status_code == 403
    assert "The marketer role may not run User.Create." in posted.text
    assert "eve" not in [u["Username"] for u in command(console, "Users.Get")["Users"]]

    # The owner takes the role away: the marketer's next request is a viewer's.
    owner = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(owner, console.url, console.login)
    owner.goto(f"{console.url}/console/team")
    owner.get_by_label("Role of mara").select_option("viewer")
    owner.get_by_role("button", name="Change the role of mara").click()
    expect(owner.get_by_role("status").first).to_have_text("mara is now viewer.")
    refused = httpx.post(
        f"{console.url}/console/lists", data={"csrf": csrf, "list_name": "Summer"},
        cookies=cookies,
    )  # fmt: skip
    assert refused.status_code == 403
    owner.get_by_role("button", name="Remove mara").click()
    expect(owner.get_by_role("status").first).to_have_text("mara was removed.")
    gone = httpx.get(f"{console.url}/console/lists", cookies=cookies, follow_redirects=False)
    assert gone.status_code == 303  # the session ended with the user
    owner.close()
