"""The console's login and domain pages, as a person uses them, in a real browser."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.api.conftest import Served
from tests.console.conftest import command, log_in, problems_of, screenshot, session_of

HOSTILE = "<script>alert(1)</script>\"' onmouseover=alert(2) javascript:alert(3)"


def test_a_person_logs_in_adds_verifies_configures_and_deletes_a_domain(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    problems = problems_of(page)

    page.goto(f"{console.url}/")
    expect(page).to_have_url(f"{console.url}/console/login")
    page.get_by_label("Username").fill(console.login[0])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Username and password do not match.")
    screenshot(page, tmp_path, "login-refused")

    log_in(page, console.url, console.login)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Domains").click()
    expect(page.get_by_role("link", name="example.com")).to_be_visible()
    screenshot(page, tmp_path, "domains")

    page.get_by_label("Domain name").fill("not a domain")
    page.get_by_role("button", name="Add domain").click()
    expect(page.get_by_role("alert")).to_have_text("Invalid domain name provided")

    page.get_by_label("Domain name").fill("Shop.Example.NET")
    page.get_by_role("button", name="Add domain").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("shop.example.net")
    expect(page.get_by_role("status")).to_contain_text("The domain was added")
    records = page.locator("table.records tbody tr")
    assert records.count() >= 2

    # Copy a record's value: what reaches the clipboard is exactly the value shown.
    value = page.locator("#value-1").inner_text().strip()
    page.get_by_role("button", name="Copy the value of").first.click()
    expect(page.get_by_role("button", name="Copy the value of").first).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == value

    page.get_by_role("button", name="Verify the records").click()
    expect(page.get_by_role("status")).to_contain_text("Verified")
    results = page.locator("ul.results li")
    assert results.count() == records.count()
    expect(results.first).to_contain_text("not found")  # the test's DNS knows no record
    screenshot(page, tmp_path, "domain-verified")

    clicks_tracked = page.get_by_role("switch", name="Track link clicks").is_checked()
    page.get_by_role("switch", name="Track opens").uncheck()
    page.get_by_label("Hosting provider").fill(HOSTILE)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("The settings were saved.")
    expect(page.get_by_role("switch", name="Track opens")).not_to_be_checked()
    expect(page.get_by_role("switch", name="Track link clicks")).to_be_checked(
        checked=clicks_tracked
    )
    expect(page.get_by_label("Hosting provider")).to_have_value(HOSTILE)
    screenshot(page, tmp_path, "domain-saved")

    page.get_by_role("link", name="Delete shop.example.net…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete shop.example.net?")
    page.get_by_role("button", name="Delete the domain").click()
    expect(page.get_by_role("status")).to_have_text("The domain was deleted.")
    expect(page.get_by_role("link", name="shop.example.net")).to_have_count(0)

    session = next(c["value"] for c in context.cookies() if c["name"] == "sendstream_session")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{console.url}/console/login")
    # The session ended everywhere: the console and /api.php refuse it.
    old = httpx.get(f"{console.url}/console/domains", cookies={"sendstream_session": session})
    assert old.status_code == 303 and old.headers["location"] == "/console/login"
    answer = httpx.post(
        f"{console.url}/api.php", data={"Command": "EmailGateway.GetDomains", "SessionID": session}
    )
    assert answer.json()["ErrorMessage"] == "Invalid SessionID or APIKey."

    assert problems == [], problems  # no script ran; the policy blocked nothing needed
    context.close()


def test_another_accounts_domain_is_not_found_and_cannot_be_changed(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    owner = command(console, "EmailGateway.AddDomain", DomainName="private.example.com")
    domain_id = owner["NewSenderDomainID"]

    def shown() -> dict[str, object]:
        answer = command(console, "EmailGateway.GetDomain", DomainID=domain_id)
        assert answer["Success"], answer
        return dict(answer["Domain"])

    before = shown()
    page = browser.new_page()
    log_in(page, console.url, console.other_login)
    page.goto(f"{console.url}/console/domains")
    for path in (f"/console/domains/{domain_id}", f"/console/domains/{domain_id}/delete"):
        response = page.goto(f"{console.url}{path}")
        assert response is not None and response.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_role("link", name="example.org")).to_have_count(0)  # only on its list
    screenshot(page, tmp_path, "not-found")
    # A form of the other account's own, sent at the first account's domain.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    for action in ("delete", "settings", "verify"):
        sent = httpx.post(
            f"{console.url}/console/domains/{domain_id}/{action}",
            data={"csrf": csrf, "LinkTracking": "1", "OpenTracking": "1",
                  "hosting_provider": "taken over"},
            cookies=cookies,
        )  # fmt: skip
        assert sent.status_code == 404, (action, sent.status_code)
    assert shown() == before
    page.close()


def test_forms_without_their_token_or_from_another_site_change_nothing(
    console: Served, browser: Browser
) -> None:
    cookies, csrf = session_of(browser, console, console.login)
    for data, headers in (
        ({"domain_name": "forged.example.net"}, {}),
        ({"domain_name": "forged.example.net", "csrf": "0" * 64}, {}),
        ({"domain_name": "forged.example.net", "csrf": csrf}, {"Origin": "https://evil.test"}),
    ):
        sent = httpx.post(
            f"{console.url}/console/domains", data=data, cookies=cookies, headers=headers
        )
        assert sent.status_code == 403, sent.text
    listed = command(console, "EmailGateway.GetDomains")
    assert [d["DomainName"] for d in listed["Domains"]] == ["example.com"]
    # The same form with its token is accepted.
    sent = httpx.post(
        f"{console.url}/console/domains",
        data={"domain_name": "real.example.net", "csrf": csrf}, cookies=cookies,
    )  # fmt: skip
    assert sent.status_code == 303


def test_every_page_is_served_with_a_policy_that_runs_no_inline_script(
    console: Served, browser: Browser
) -> None:
    cookies, _ = session_of(browser, console, console.login)
    for path, sent in (("/console/login", {}), ("/console/domains", cookies),
                       ("/console/overview", cookies), ("/console/messages", cookies),
                       ("/console/nothing-here", cookies)):  # fmt: skip
        answer = httpx.get(f"{console.url}{path}", cookies=sent)
        assert answer.status_code in (200, 404), (path, answer.status_code)
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in answer.text  # only <script src=…>
    cookie = httpx.get(f"{console.url}/console/login").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_repeated_failed_logins_lock_the_username_out(console: Served) -> None:
    client = httpx.Client(base_url=console.url)
    statuses = []
    for _ in range(11):
        form = client.get("/console/login")
        token = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        sent = client.post(
            "/console/login",
            data={"csrf": token, "username": console.login[0], "password": "wrong"},
        )
        statuses.append(sent.status_code)
    assert statuses[:10] == [401] * 10 and statuses[10] == 429, statuses
    assert int(sent.headers["retry-after"]) > 0
    # Locked even with the right password, until the wait is over.
    form = client.get("/console/login")
    token = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    right = client.post(
        "/console/login",
        data={"csrf": token, "username": console.login[0], "password": console.login[1]},
    )
    assert right.status_code == 429


def test_the_pages_fit_a_phone_screen(console: Served, browser: Browser, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    log_in(page, console.url, console.login)
    page.goto(f"{console.url}/console/domains")
    page.get_by_role("link", name="example.com").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("example.com")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the screen"
    screenshot(page, tmp_path, "domain-phone")
    # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()
    page.close()
