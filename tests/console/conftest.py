"""The console in a real browser: Debian's headless Chromium, driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, sync_playwright

from tests.api.conftest import Served, serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Where the tests leave their screenshots besides their own tmp folder (the README's come
# from here: CONSOLE_SCREENSHOTS=docs/screenshots pytest tests/console).
SCREENSHOTS = os.environ.get("CONSOLE_SCREENSHOTS", "")


@pytest.fixture
def console(tmp_path: Path, dns_server: Callable[..., Any]) -> Iterator[Served]:
    """A served engine whose DNS is a dnsmasq that knows none of the test's domains."""
    dns = dns_server([], zones=["example.net", "example.com", "example.org"])
    with serving(tmp_path, DNS_RESOLVER=dns.resolver) as served:
        yield served


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: make test-deps installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def screenshot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def log_in(page: Page, served_url: str, login: tuple[str, str]) -> None:
    page.goto(f"{served_url}/console")
    page.get_by_label("Username").fill(login[0])
    page.get_by_label("Password").fill(login[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/console/overview")


def command(served: Served, name: str, **params: str) -> dict[str, Any]:
    """An /api.php command of the first account, to set up or check what a page did."""
    answer: dict[str, Any] = httpx.post(
        f"{served.url}/api.php",
        data={"Command": name, "APIKey": served.keys["ACCOUNT_KEY"], **params},
    ).json()
    return answer


def session_of(
    browser: Browser, served: Served, login: tuple[str, str]
) -> tuple[dict[str, str], str]:
    """Log in in the browser; the session's cookies and a form's CSRF token, for requests
    sent without it."""
    page = browser.new_page()
    log_in(page, served.url, login)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    page.close()
    return cookies, csrf


def problems_of(page: Page) -> list[str]:
    """What goes wrong in the page from now on: script errors, anything its policy
    blocked, and any dialog a script opened (dismissed; a hostile string that ran)."""
    found: list[str] = []

    def dialog(opened: Dialog) -> None:
        found.append(f"a dialog: {opened.message}")
        opened.dismiss()

    page.on("pageerror", lambda error: found.append(str(error)))
    page.on(
        "console",
        lambda message: (
            found.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.on("dialog", dialog)
    return found
