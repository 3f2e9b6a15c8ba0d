"""A domain's sender keys, SMTP credentials and webhooks in a real browser: secrets shown
once, a key that sends then stops, a test event that reaches a real receiver and its log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.api.conftest import Served
from tests.console.conftest import command, log_in, problems_of, screenshot, session_of
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    yield started
    started.stop()


def _send_with(console: Served, key: str) -> int:
    return httpx.post(
        f"{console.url}/api/v1/email",
        headers={"Authorization": f"Bearer {key}"},
        json={"Subject": "Key check", "ContentType": "plain", "PlainContent": "Hi",
              "From": {"email": "news@example.com", "name": "News"},
              "To": [{"email": "jane@example.net", "name": "Jane"}]},
    ).status_code  # fmt: skip


def test_a_key_is_shown_once_sends_and_stops_when_revoked_and_smtp_credentials_too(
    console: Served, browser: Browser, tmp_path: Path
) -> None:
    domain_id = command(console, "EmailGateway.GetDomains")["Domains"][0]["DomainID"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    page.goto(f"{console.url}/console/domains/{domain_id}")
    page.get_by_role("link", name="Sender keys and SMTP").click()

    page.get_by_label("Description of a new key").fill('Checkout "service" <b>')
    page.get_by_role("button", name="Make a key").click()
    expect(page.get_by_role("heading", name="Shown only this once")).to_be_visible()
    key = page.locator(".secret code").first.inner_text()
    assert key.startswith("snd_")
    assert _send_with(console, key) == 200
    screenshot(page, tmp_path, "credentials")
    page.goto(page.url)  # the page again (a GET): the secret is gone for good
    expect(page.get_by_role("heading", name="Shown only this once")).to_have_count(0)
    assert key not in page.content()
    expect(page.get_by_role("cell", name='Checkout "service" <b>', exact=True)).to_be_visible()

    page.get_by_role("button", name='Revoke the key Checkout "service" <b>').click()
    expect(page.get_by_role("status")).to_have_text("The key was revoked: it no longer sends.")
    assert _send_with(console, key) == 401

    page.get_by_role("button", name="Make an SMTP credential").click()
    password = page.locator(".secret code").nth(1).inner_text()
    username = page.locator(".secret code").first.inner_text()
    assert username.endswith("@example.com") and len(password) >= 16
    page.get_by_role("button", name=f"Issue a new password for {username}").click()
    new_password = page.locator(".secret code").nth(1).inner_text()
    assert new_password != password
    page.get_by_role("button", name=f"Delete {username}").click()
    expect(page.get_by_role("status")).to_have_text("The SMTP credential was deleted.")
    assert command(console, "EmailGateway.GetSMTPs", DomainID=domain_id)["SMTPs"] == []
    assert problems == [], problems
    page.close()


def test_a_webhook_is_added_tested_and_its_attempt_logged(
    console: Served, browser: Browser, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    domain_id = command(console, "EmailGateway.GetDomains")["Domains"][0]["DomainID"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = problems_of(page)
    log_in(page, console.url, console.login)
    page.goto(f"{console.url}/console/domains/{domain_id}/webhooks")
    signing_key = page.locator("#signing-key").inner_text()
    assert signing_key.startswith("whsec_")

    page.get_by_label("Event").select_option("bounce")
    page.get_by_label("URL").fill(f"{receiver.url}/hooks/bounces")
    page.get_by_role("button", name="Add a webhook").click()
    expect(page.get_by_role("status")).to_contain_text("The webhook was added")
    page.get_by_role("button", name=f"Send a test event to {receiver.url}/hooks/bounces").click()
    expect(page.get_by_role("status")).to_contain_text("A test event was queued")

    deadline = time.monotonic() + 30
    while not receiver.calls_to("/hooks/bounces"):
        assert time.monotonic() < deadline, "the test event never arrived"
        time.sleep(0.2)
    call = receiver.calls_to("/hooks/bounces")[0]
    assert call.headers["webhook-id"].startswith("msg_")
    assert b'"CustomID":"test"' in call.body and b'"email.bounce"' in call.body

    page.get_by_role(
        "link", name=f"Attempts of the bounce webhook to {receiver.url}/hooks/bounces"
    ).click()
    while page.locator("section.attempt").count() == 0:
        assert time.monotonic() < deadline + 15, "the attempt was never logged"
        time.sleep(0.3)
        page.reload()
    expect(page.locator("section.attempt").first).to_contain_text("200")
    screenshot(page, tmp_path, "webhook-attempts")
    page.get_by_role("link", name="Failed").click()
    expect(page.get_by_role("status")).to_have_text("No attempt yet.")
    assert problems == [], problems
    page.close()


def test_another_accounts_credentials_and_webhooks_are_not_found(
    console: Served, browser: Browser
) -> None:
    domain_id = command(console, "EmailGateway.GetDomains")["Domains"][0]["DomainID"]
    hook = command(console, "EmailGateway.AddWebhook", DomainID=domain_id, Event="open",
                   WebhookURL="http://127.0.0.1:9/hook")["NewWebhookID"]  # fmt: skip
    cookies, csrf = session_of(browser, console, console.other_login)
    pages = ("credentials", "webhooks")
    for path in (
        *(f"/console/domains/{domain_id}/{p}" for p in pages),
        f"/console/webhooks/{hook}",
    ):
        assert httpx.get(f"{console.url}{path}", cookies=cookies).status_code == 404, path
    for path, data in (
        (f"/console/domains/{domain_id}/credentials", {"action": "add_key", "description": "x"}),
        (f"/console/domains/{domain_id}/webhooks", {"action": "test", "target": hook}),
        (f"/console/domains/{domain_id}/webhooks", {"action": "delete", "target": hook}),
    ):
        sent = httpx.post(f"{console.url}{path}", data={**data, "csrf": csrf}, cookies=cookies)
        assert sent.status_code == 404, (path, data, sent.status_code)
    assert (
        command(console, "EmailGateway.GetAPIs", DomainID=domain_id)["APIKeys"][0]["Description"]
        != "x"
    )
    hooks = command(console, "EmailGateway.GetWebhooks", DomainID=domain_id)["Webhooks"]
    assert [h["WebhookID"] for h in hooks] == [hook]
